/* Small inline-SVG charts for the run page (no external libraries). */
(function () {
  "use strict";
  const NS = "http://www.w3.org/2000/svg";
  const el = (name, attrs, text) => {
    const node = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  };
  const svg = (w, h, label) => el("svg", { viewBox: `0 0 ${w} ${h}`, role: "img", "aria-label": label, class: "chart" });

  /* Horizontal bars: items [{label, value}] */
  function bars(items, { label, format = (v) => v.toFixed(3) } = {}) {
    const rowH = 26, left = 170, width = 560, height = items.length * rowH + 10;
    const root = svg(width, height, label);
    const max = Math.max(...items.map((i) => Math.abs(i.value)), 1e-12);
    const zero = items.some((i) => i.value < 0) ? left + (width - left - 70) / 2 : left;
    const span = items.some((i) => i.value < 0) ? (width - left - 70) / 2 : width - left - 70;
    items.forEach((item, n) => {
      const y = 5 + n * rowH;
      const w = (Math.abs(item.value) / max) * span;
      const x = item.value < 0 ? zero - w : zero;
      const shown = item.label.length > 24 ? item.label.slice(0, 23) + "…" : item.label;
      const labelNode = el("text", { x: left - 8, y: y + 16, "text-anchor": "end", class: "chart-label" }, shown);
      labelNode.append(el("title", {}, item.label));
      root.append(labelNode);
      root.append(el("rect", { x, y: y + 3, width: Math.max(w, 1), height: rowH - 8, class: item.value < 0 ? "bar-negative" : "bar" }));
      root.append(el("text", { x: Math.max(x + w, zero) + 6, y: y + 16, class: "chart-value" }, format(item.value)));
    });
    return root;
  }

  /* Line through points [[x, y]] in [0,1]x[0,1] with a diagonal (ROC). */
  function curve(points, { label, xLabel, yLabel }) {
    const size = 300, pad = 40;
    const root = svg(size + pad, size + pad, label);
    const px = (x) => pad + x * (size - 10), py = (y) => size - y * (size - 10);
    root.append(el("rect", { x: pad, y: 10, width: size - 10, height: size - 10, class: "chart-frame" }));
    root.append(el("line", { x1: px(0), y1: py(0), x2: px(1), y2: py(1), class: "chart-diagonal" }));
    root.append(el("polyline", { points: points.map(([x, y]) => `${px(x)},${py(y)}`).join(" "), class: "chart-line" }));
    root.append(el("text", { x: pad + size / 2, y: size + 30, "text-anchor": "middle", class: "chart-label" }, xLabel));
    root.append(el("text", { x: 12, y: size / 2, transform: `rotate(-90 12 ${size / 2})`, "text-anchor": "middle", class: "chart-label" }, yLabel));
    return root;
  }

  /* Scatter of [[actual, predicted]] with the y = x line. */
  function scatter(points, { label }) {
    const size = 300, pad = 40;
    const values = points.flat();
    const lo = Math.min(...values), hi = Math.max(...values), range = hi - lo || 1;
    const px = (v) => pad + ((v - lo) / range) * (size - 10), py = (v) => size - ((v - lo) / range) * (size - 10);
    const root = svg(size + pad, size + pad, label);
    root.append(el("rect", { x: pad, y: 10, width: size - 10, height: size - 10, class: "chart-frame" }));
    root.append(el("line", { x1: px(lo), y1: py(lo), x2: px(hi), y2: py(hi), class: "chart-diagonal" }));
    for (const [a, p] of points) root.append(el("circle", { cx: px(a), cy: py(p), r: 2.5, class: "chart-dot" }));
    root.append(el("text", { x: pad + size / 2, y: size + 30, "text-anchor": "middle", class: "chart-label" }, "actual"));
    root.append(el("text", { x: 12, y: size / 2, transform: `rotate(-90 12 ${size / 2})`, "text-anchor": "middle", class: "chart-label" }, "predicted"));
    return root;
  }

  /* Confusion matrix as a table with shaded cells. */
  function confusion({ labels, matrix }) {
    const table = document.createElement("table");
    table.className = "confusion";
    const max = Math.max(...matrix.flat(), 1);
    const head = table.createTHead().insertRow();
    head.append(Object.assign(document.createElement("th"), { textContent: "actual \\ predicted" }));
    labels.forEach((l) => head.append(Object.assign(document.createElement("th"), { textContent: l })));
    const body = table.createTBody();
    matrix.forEach((row, i) => {
      const tr = body.insertRow();
      tr.append(Object.assign(document.createElement("th"), { textContent: labels[i] }));
      row.forEach((count) => {
        const td = tr.insertCell();
        td.textContent = count;
        td.style.background = `rgba(59, 91, 219, ${0.08 + 0.72 * (count / max)})`;
        if (count / max > 0.5) td.style.color = "#fff";
      });
    });
    return table;
  }

  window.MarketplaceCharts = { bars, curve, scatter, confusion };
})();
