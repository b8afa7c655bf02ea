// Starts Swagger UI on /docs. A file, not an inline script: the Content-Security-Policy allows
// scripts from this origin only (docs/security.md).
(function () {
  "use strict";
  window.addEventListener("load", function () {
    var root = document.getElementById("swagger-ui");
    window.ui = SwaggerUIBundle({
      url: root.getAttribute("data-openapi-url"),
      dom_id: "#swagger-ui",
      deepLinking: true,
      presets: [SwaggerUIBundle.presets.apis],
      layout: "BaseLayout",
      // The key typed into Authorize stays in this page's memory, not in localStorage.
      persistAuthorization: false,
      // No call to the public validator service: /docs works offline.
      validatorUrl: null
    });
  });
})();
