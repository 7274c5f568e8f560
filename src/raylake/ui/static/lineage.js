// The lineage graph: hovering a node lights up everything upstream and downstream of it;
// each node is a link to its page (table version, model version, run). No libraries.
(function () {
  "use strict";
  var svg = document.getElementById("lineage-graph");
  var data = document.getElementById("lineage-edges");
  if (!svg || !data) { return; }
  var edges = JSON.parse(data.textContent);
  var ups = {}, downs = {};
  edges.forEach(function (e) {
    (downs[e[0]] = downs[e[0]] || []).push(e[1]);
    (ups[e[1]] = ups[e[1]] || []).push(e[0]);
  });
  function reach(start, next) {
    var seen = {}, todo = [start];
    while (todo.length) {
      var k = todo.pop();
      if (seen[k]) { continue; }
      seen[k] = true;
      (next[k] || []).forEach(function (n) { todo.push(n); });
    }
    return seen;
  }
  function light(key) {
    var lit = Object.assign(reach(key, ups), reach(key, downs));
    svg.classList.add("hovering");
    svg.querySelectorAll(".node").forEach(function (n) {
      n.classList.toggle("lit", !!lit[n.getAttribute("data-key")]);
    });
    svg.querySelectorAll(".edge").forEach(function (p) {
      var on = lit[p.getAttribute("data-src")] && lit[p.getAttribute("data-dst")];
      p.classList.toggle("lit", !!on);
    });
  }
  function clear() {
    svg.classList.remove("hovering");
    svg.querySelectorAll(".lit").forEach(function (n) { n.classList.remove("lit"); });
  }
  svg.querySelectorAll(".node").forEach(function (n) {
    n.addEventListener("mouseenter", function () { light(n.getAttribute("data-key")); });
    n.addEventListener("mouseleave", clear);
    n.addEventListener("focus", function () { light(n.getAttribute("data-key")); });
    n.addEventListener("blur", clear);
  });
  var focus = svg.querySelector(".node.focus");
  var wrap = document.getElementById("graph-wrap");
  if (focus && wrap) {  // the node the page is about, in view
    var box = focus.getBBox();
    wrap.scrollLeft = Math.max(0, box.x + box.width / 2 - wrap.clientWidth / 2);
  }
  document.body.setAttribute("data-graph-ready", String(edges.length));
})();
