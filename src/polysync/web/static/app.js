// Polysync web UI: the few behaviours htmx does not cover (auth method fields, dialogs, select all).
(function () {
  "use strict";

  function showAuthFields(select) {
    var form = select.form;
    form.querySelectorAll("[data-auth-method]").forEach(function (group) {
      var active = group.getAttribute("data-auth-method") === select.value;
      group.hidden = !active;
      // Hidden methods' fields are disabled so they are neither validated nor submitted.
      group.querySelectorAll("input, select, textarea").forEach(function (input) {
        input.disabled = !active;
      });
    });
  }

  function init(root) {
    root.querySelectorAll("[data-auth-select]").forEach(function (select) {
      showAuthFields(select);
      select.addEventListener("change", function () { showAuthFields(select); });
    });
  }

  document.addEventListener("click", function (event) {
    var opener = event.target.closest("[data-open-dialog]");
    if (opener) {
      var dialog = document.getElementById(opener.getAttribute("data-open-dialog"));
      if (dialog) {
        dialog.showModal();
        var first = dialog.querySelector("input:not([type=hidden]), select, textarea");
        if (first) first.focus();
      }
      return;
    }
    var closer = event.target.closest("[data-close-dialog]");
    if (closer) {
      var open = closer.closest("dialog");
      if (open) open.close();
    }
  });

  document.addEventListener("change", function (event) {
    var all = event.target.closest("[data-select-all]");
    if (!all) return;
    var name = all.getAttribute("data-select-all");
    all.form.querySelectorAll('input[type=checkbox][name="' + name + '"]').forEach(function (box) {
      box.checked = all.checked;
    });
  });

  // A plain form that destroys something asks first (htmx forms use hx-confirm).
  document.addEventListener("submit", function (event) {
    var question = event.target.getAttribute("data-confirm");
    if (question && !window.confirm(question)) event.preventDefault();
  });

  document.addEventListener("DOMContentLoaded", function () { init(document); });
  document.addEventListener("htmx:load", function (event) { init(event.target); });
})();
