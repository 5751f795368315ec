// Draws every chart whose data the page embeds as <script type="application/json" data-chart="canvas-id">.
(function () {
  "use strict";
  if (typeof Chart === "undefined") { return; }
  document.querySelectorAll("script[data-chart]").forEach(function (node) {
    var spec = JSON.parse(node.textContent);
    var canvas = document.getElementById(node.getAttribute("data-chart"));
    if (!canvas) { return; }
    var scatter = spec.type === "scatter";
    var datasets = spec.datasets.map(function (d) {
      return {
        label: d.label,
        data: scatter ? d.points : d.data,
        borderColor: d.color,
        backgroundColor: d.color,
        borderDash: d.dashed ? [6, 4] : [],
        showLine: scatter ? true : undefined,
        pointRadius: d.dashed ? 0 : 3,
        spanGaps: true,
        fill: false
      };
    });
    var options = { animation: false, responsive: true, maintainAspectRatio: false, scales: {} };
    if (scatter) {
      options.scales = { x: { min: 0, max: 1, title: { display: true, text: "predicted probability" } },
                         y: { min: 0, max: 1, title: { display: true, text: "observed frequency" } } };
    } else if (spec.y_title) {
      options.scales = { y: { beginAtZero: true, title: { display: true, text: spec.y_title } } };
    }
    new Chart(canvas, { type: spec.type, data: { labels: spec.labels, datasets: datasets }, options: options });
  });
})();
