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

// Links marked data-airflow-route open a page of Airflow's own UI. Airflow shows this app in a frame sandboxed
// without top navigation, so there a plain target="_top" link does nothing; the frame has the same origin,
// though, so it pushes the URL onto Airflow's history and lets Airflow's router (which follows popstate) show it.
(function () {
  "use strict";
  document.querySelectorAll("a[data-airflow-route]").forEach(function (link) {
    link.addEventListener("click", function (event) {
      var top;
      try {
        top = window.top;
        if (top === window || top.location.origin !== window.location.origin) { return; }
      } catch (e) {
        return; // another origin: the plain link is all there is
      }
      event.preventDefault();
      var idx = (top.history.state && typeof top.history.state.idx === "number") ? top.history.state.idx + 1 : 0;
      var state = { usr: null, key: "segmentation", idx: idx };
      top.history.pushState(state, "", link.href);
      top.dispatchEvent(new PopStateEvent("popstate", { state: state }));
    });
  });
})();
