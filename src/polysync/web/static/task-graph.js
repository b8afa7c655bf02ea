// Polysync web UI: draws a Task dependency diagram as SVG. The page embeds the graph as JSON in
// <figure data-task-graph='...'> (web/task_views.py dependency_graph, written with Jinja's
// tojson, which escapes < > & and ' for a single-quoted attribute); dagre
// (static/vendor/dagre.min.js) lays it out. Names are set as text nodes only, never as markup. A Task editor's Dependencies list redraws the focus
// Task's upstream edges as they are edited, before saving.
(function () {
  "use strict";

  var SVG = "http://www.w3.org/2000/svg";
  var MAX_LABEL = 32;
  var CHAR_W = 7.4;
  var NODE_H = 40;

  function el(name, attrs) {
    var node = document.createElementNS(SVG, name);
    Object.keys(attrs || {}).forEach(function (key) { node.setAttribute(key, String(attrs[key])); });
    return node;
  }

  function label(name) {
    var chars = Array.from(name.replace(/[\u0000-\u001f\u007f-\u009f]/g, "\u00b7"));
    return chars.length > MAX_LABEL ? chars.slice(0, MAX_LABEL - 1).join("") + "\u2026" : chars.join("");
  }

  // The focus Task's upstream edges as the form shows them now (the editable list).
  function draftEdges(form, focus, byName) {
    var edges = [];
    form.querySelectorAll("[data-dependency-row]").forEach(function (row) {
      var upstream = row.querySelector("[data-dependency-upstream]");
      var condition = row.querySelector("[data-dependency-condition]");
      var removed = row.querySelector("[data-dependency-remove]");
      if (!upstream || !upstream.value || (removed && removed.checked)) return;
      var node = byName[upstream.value];
      if (!node) return;
      edges.push({ from: node.id, to: focus, condition: condition ? condition.value : "on_success" });
    });
    return edges;
  }

  function withDraft(data, figure) {
    var formId = figure.getAttribute("data-task-graph-form");
    var form = formId && document.getElementById(formId);
    var focusNode = data.nodes.filter(function (n) { return n.focus; })[0];
    if (!form || !focusNode || !data.all) return data;
    var byName = {};
    var byId = {};
    data.all.forEach(function (pair) {
      var n = { id: pair[0], name: pair[1], href: "/tasks/" + pair[0], focus: false, paused: false, status: null };
      byName[n.name] = n;
      byId[n.id] = n;
    });
    var edges = data.edges.filter(function (e) { return e.to !== focusNode.id; });
    var draft = draftEdges(form, focusNode.id, byName);
    var nodes = data.nodes.slice();
    var present = {};
    nodes.forEach(function (n) { present[n.id] = true; });
    draft.forEach(function (e) {
      if (!present[e.from]) { nodes.push(byId[e.from]); present[e.from] = true; }
    });
    return { nodes: nodes, edges: edges.concat(draft), hidden: data.hidden };
  }

  function draw(figure) {
    if (typeof dagre === "undefined") return;
    var data = withDraft(JSON.parse(figure.getAttribute("data-task-graph")), figure);
    var holder = figure.querySelector("[data-task-graph-canvas]") || figure;
    while (holder.firstChild) holder.removeChild(holder.firstChild);
    if (!data.nodes.length) {
      figure.setAttribute("data-rendered", "empty");
      return;
    }
    var g = new dagre.graphlib.Graph({ multigraph: false });
    g.setGraph({ rankdir: "LR", nodesep: 18, ranksep: 56, marginx: 8, marginy: 8 });
    g.setDefaultEdgeLabel(function () { return {}; });
    data.nodes.forEach(function (n) {
      var text = label(n.name);
      g.setNode(String(n.id), { node: n, text: text, width: Math.max(80, Array.from(text).length * CHAR_W + 28), height: NODE_H });
    });
    data.edges.forEach(function (e) {
      if (g.hasNode(String(e.from)) && g.hasNode(String(e.to))) {
        g.setEdge(String(e.from), String(e.to), { condition: e.condition });
      }
    });
    dagre.layout(g);
    var graph = g.graph();
    var width = Math.ceil(graph.width || 0), height = Math.ceil(graph.height || 0);
    var svg = el("svg", { viewBox: "0 0 " + width + " " + height, width: width, height: height, role: "img", "class": "task-graph-svg" });
    var title = el("title");
    title.textContent = figure.getAttribute("data-task-graph-title") || "Task dependencies";
    svg.appendChild(title);
    var defs = el("defs");
    ["on_success", "on_failure", "on_completion"].forEach(function (kind) {
      var marker = el("marker", { id: figure.id + "-arrow-" + kind, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
      marker.appendChild(el("path", { d: "M 0 0 L 10 5 L 0 10 z", "class": "edge-head edge-" + kind }));
      defs.appendChild(marker);
    });
    svg.appendChild(defs);
    g.edges().forEach(function (ref) {
      var edge = g.edge(ref);
      var points = edge.points.map(function (p) { return p.x.toFixed(1) + "," + p.y.toFixed(1); });
      var path = el("polyline", { points: points.join(" "), "class": "edge edge-" + edge.condition, "marker-end": "url(#" + figure.id + "-arrow-" + edge.condition + ")" });
      var tip = el("title");
      tip.textContent = g.node(ref.v).node.name + " \u2192 " + g.node(ref.w).node.name + " (" + edge.condition.replace("_", " ") + ")";
      path.appendChild(tip);
      path.setAttribute("data-edge", ref.v + "-" + ref.w);
      svg.appendChild(path);
    });
    g.nodes().forEach(function (id) {
      var box = g.node(id);
      var n = box.node;
      var link = el("a", { href: n.href, "class": "node" + (n.focus ? " node-focus" : "") + (n.paused ? " node-paused" : "") + (n.status ? " status-" + n.status.toLowerCase() : "") });
      link.setAttribute("data-node", String(n.id));
      var tip = el("title");
      tip.textContent = n.name + (n.status ? " \u2014 last run " + n.status : "") + (n.paused ? " (paused)" : "");
      link.appendChild(tip);
      link.appendChild(el("rect", { x: (box.x - box.width / 2).toFixed(1), y: (box.y - box.height / 2).toFixed(1), width: box.width.toFixed(1), height: box.height, rx: 6 }));
      var text = el("text", { x: box.x.toFixed(1), y: (box.y + 4).toFixed(1), "text-anchor": "middle" });
      text.textContent = box.text;
      link.appendChild(text);
      svg.appendChild(link);
    });
    holder.appendChild(svg);
    figure.setAttribute("data-rendered", String(g.nodeCount()));
  }

  function init(root) {
    root.querySelectorAll("[data-task-graph]").forEach(function (figure) {
      draw(figure);
      var formId = figure.getAttribute("data-task-graph-form");
      var form = formId && document.getElementById(formId);
      if (form && !form.hasAttribute("data-task-graph-bound")) {
        form.setAttribute("data-task-graph-bound", "");
        var redraw = function (event) {
          if (event.target.closest("[data-dependency-row]")) draw(figure);
        };
        form.addEventListener("change", redraw);
        form.addEventListener("input", redraw);
      }
    });
  }

  document.addEventListener("DOMContentLoaded", function () { init(document); });
  document.addEventListener("htmx:load", function (event) { init(event.target); });
  document.addEventListener("polysync:dependencies-changed", function () { init(document); });
})();
