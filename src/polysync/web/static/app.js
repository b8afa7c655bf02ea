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

  // Tabs (the Task editor): without this script every panel shows, one after another.
  function showTab(container, key) {
    container.querySelectorAll("[role=tab]").forEach(function (tab) {
      var active = tab.getAttribute("data-tab") === key;
      tab.setAttribute("aria-selected", active ? "true" : "false");
      tab.tabIndex = active ? 0 : -1;
      var panel = document.getElementById(tab.getAttribute("aria-controls"));
      if (panel) panel.hidden = !active;
    });
  }

  function initTabs(container) {
    if (container.classList.contains("js-tabs")) return;
    container.classList.add("js-tabs");
    showTab(container, container.getAttribute("data-active-tab") || "general");
    var tabs = Array.prototype.slice.call(container.querySelectorAll("[role=tab]"));
    tabs.forEach(function (tab, index) {
      tab.addEventListener("click", function () { showTab(container, tab.getAttribute("data-tab")); });
      tab.addEventListener("keydown", function (event) {
        var step = event.key === "ArrowRight" ? 1 : event.key === "ArrowLeft" ? -1 : 0;
        if (!step) return;
        var next = tabs[(index + step + tabs.length) % tabs.length];
        showTab(container, next.getAttribute("data-tab"));
        next.focus();
        event.preventDefault();
      });
    });
  }

  function init(root) {
    root.querySelectorAll("[data-auth-select]").forEach(function (select) {
      showAuthFields(select);
      select.addEventListener("change", function () { showAuthFields(select); });
    });
    root.querySelectorAll("[data-tabs]").forEach(initTabs);
  }

  // Repeated rows (a Task's dependencies and schedules): add one from its <template>, remove one.
  var added = 0;
  document.addEventListener("click", function (event) {
    var adder = event.target.closest("[data-add-row]");
    if (adder) {
      var kind = adder.getAttribute("data-add-row");
      var template = document.getElementById(kind + "-row-template");
      var rows = document.querySelector('[data-rows="' + kind + '"]');
      if (!template || !rows) return;
      var copy = template.content.cloneNode(true);
      added += 1;
      copy.querySelectorAll("[id]").forEach(function (node) {
        var old = node.id;
        node.id = old.replace(/-new$/, "-added" + added);
        var label = copy.querySelector('label[for="' + old + '"]');
        if (label) label.setAttribute("for", node.id);
      });
      var first = copy.querySelector("input, select");
      rows.appendChild(copy);
      if (first) first.focus();
      document.dispatchEvent(new CustomEvent("polysync:dependencies-changed"));
      return;
    }
    var remover = event.target.closest("[data-remove-row]");
    if (remover) {
      var row = remover.closest("[data-dependency-row], [data-schedule-row]");
      if (row) row.remove();
      document.dispatchEvent(new CustomEvent("polysync:dependencies-changed"));
    }
  });

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
