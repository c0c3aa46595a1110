/* Small inline-SVG charts for the run and earnings pages (no external libraries). */
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
      labelNode.append(el("title", {}, item.title || item.label));
      root.append(labelNode);
      root.append(el("rect", { x, y: y + 3, width: Math.max(w, 1), height: rowH - 8, class: item.value < 0 ? "bar-negative" : "bar" }));
      root.append(el("text", { x: Math.max(x + w, zero) + 6, y: y + 16, class: "chart-value" }, format(item.value)));
    });
    return root;
  }

  /* A dataset's name on a chart: its title, shortened, and its id, which tells apart shards
     of one set listed under the same title. */
  function datasetLabel(title, id, max = 24) {
    const suffix = id === null || id === undefined ? "" : ` #${id}`;
    const room = Math.max(max - suffix.length, 4);
    const name = title.length > room ? title.slice(0, room - 1).trimEnd() + "…" : title;
    return name + suffix;
  }

  const TIME_STEPS = [60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400,
    7 * 86400, 14 * 86400, 30 * 86400, 91 * 86400, 182 * 86400, 365 * 86400];

  /* Cumulative amounts over time as a step line: points [{at: unix seconds, wei: string}],
     dates on the x axis, ETH on the y axis. */
  function timeline(points, { label }) {
    const M = window.MarketplaceMoney;
    const width = 620, height = 300, left = 78, right = 16, top = 14, bottom = 48;
    const root = svg(width, height, label);
    let from = points[0].at, to = points[points.length - 1].at;
    const pad = Math.max((to - from) * 0.05, 1800);  // room around one point or a short burst
    from -= pad;
    to += pad;
    const yTicks = M.ticks(points[points.length - 1].wei);
    const yMax = yTicks[yTicks.length - 1];
    const px = (t) => left + ((t - from) / (to - from)) * (width - left - right);
    // A ratio of two BigInts, scaled before converting: only the pixel position is rounded.
    const py = (wei) => height - bottom - (Number((BigInt(wei) * 1000000n) / yMax) / 1000000) * (height - top - bottom);
    root.append(el("rect", { x: left, y: top, width: width - left - right, height: height - top - bottom, class: "chart-frame" }));

    const yAxis = el("g", { class: "chart-y-axis" });
    for (const tick of yTicks) {
      const y = py(tick);
      yAxis.append(el("line", { x1: left - 4, y1: y, x2: width - right, y2: y, class: "chart-grid" }));
      yAxis.append(el("text", { x: left - 8, y: y + 4, "text-anchor": "end", class: "chart-tick" }, M.formatEth(tick)));
    }
    root.append(yAxis);

    const span = to - from;
    const step = TIME_STEPS.find((s) => span / s <= 5) || Math.ceil(span / 5 / 86400) * 86400;
    const withTime = step < 86400;
    const format = new Intl.DateTimeFormat(undefined, withTime
      ? { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" }
      : { year: "numeric", month: "short", day: "numeric" });
    const xAxis = el("g", { class: "chart-x-axis" });
    for (let t = Math.ceil(from / step) * step; t <= to; t += step) {
      const x = px(t);
      xAxis.append(el("line", { x1: x, y1: height - bottom, x2: x, y2: height - bottom + 4, class: "chart-grid" }));
      xAxis.append(el("text", { x, y: height - bottom + 17, "text-anchor": "middle", class: "chart-tick" }, format.format(new Date(t * 1000))));
    }
    root.append(xAxis);

    let path = `${px(from)},${py(0)}`, last = 0n;
    for (const p of points) {
      path += ` ${px(p.at)},${py(last)} ${px(p.at)},${py(p.wei)}`;
      last = BigInt(p.wei);
    }
    path += ` ${px(to)},${py(last)}`;
    root.append(el("polyline", { points: path, class: "chart-line" }));
    for (const p of points) {
      const dot = el("circle", { cx: px(p.at), cy: py(p.wei), r: 3.5, class: "chart-dot" });
      dot.append(el("title", {}, `${new Date(p.at * 1000).toLocaleString()}: ${M.formatEth(p.wei)} ETH (${p.wei} wei)`));
      root.append(dot);
    }
    root.append(el("text", { x: left + (width - left - right) / 2, y: height - 8, "text-anchor": "middle", class: "chart-label" }, "date"));
    root.append(el("text", { x: 14, y: top + (height - top - bottom) / 2, transform: `rotate(-90 14 ${top + (height - top - bottom) / 2})`, "text-anchor": "middle", class: "chart-label" }, "ETH earned in total"));
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

  /* Heatmap of a 2-D histogram {edges, cells: [[actual bin, predicted bin, rows]], min_rows}:
     the same bins on both axes, the y = x line; cells left out (under min_rows) stay blank. */
  function heatmap({ edges, cells, min_rows: minRows }, { label, xLabel = "actual", yLabel = "predicted" }) {
    const size = 300, pad = 40, left = pad + 14;
    const root = svg(size + left, size + pad, label);
    const bins = Math.max(edges.length - 1, 1), cell = (size - 10) / bins;
    const px = (i) => left + i * cell, py = (j) => size - (j + 1) * cell;
    root.append(el("rect", { x: left, y: 10, width: size - 10, height: size - 10, class: "chart-frame" }));
    const max = Math.max(...cells.map((c) => c[2]), 1);
    const range = (i) => `${edges[i]} to ${edges[i + 1]}`;
    for (const [i, j, count] of cells) {
      const box = el("rect", { x: px(i), y: py(j), width: cell, height: cell, class: "chart-cell",
        fill: `rgba(59, 91, 219, ${0.15 + 0.85 * (count / max)})` });
      box.append(el("title", {}, `${xLabel} ${range(i)}, ${yLabel} ${range(j)}: ${count} rows`));
      root.append(box);
    }
    root.append(el("line", { x1: px(0), y1: size, x2: px(bins), y2: 10, class: "chart-diagonal" }));
    const every = Math.ceil(bins / 5);
    for (let n = 0; n <= bins; n += every) {
      root.append(el("text", { x: px(n), y: size + 14, "text-anchor": "middle", class: "chart-tick" }, String(edges[n])));
      root.append(el("text", { x: left - 4, y: size - n * cell + 4, "text-anchor": "end", class: "chart-tick" }, String(edges[n])));
    }
    root.append(el("text", { x: left + size / 2, y: size + 32, "text-anchor": "middle", class: "chart-label" }, xLabel));
    root.append(el("text", { x: 10, y: size / 2, transform: `rotate(-90 10 ${size / 2})`, "text-anchor": "middle", class: "chart-label" }, yLabel));
    if (minRows) root.dataset.minRows = minRows;
    return root;
  }

  /* Confusion matrix as a table with shaded cells; a null cell holds fewer than min_rows rows. */
  function confusion({ labels, matrix, min_rows: minRows }) {
    const table = document.createElement("table");
    table.className = "confusion";
    const max = Math.max(...matrix.flat().filter((c) => c !== null), 1);
    const head = table.createTHead().insertRow();
    head.append(Object.assign(document.createElement("th"), { textContent: "actual \\ predicted" }));
    labels.forEach((l) => head.append(Object.assign(document.createElement("th"), { textContent: l })));
    const body = table.createTBody();
    matrix.forEach((row, i) => {
      const tr = body.insertRow();
      tr.append(Object.assign(document.createElement("th"), { textContent: labels[i] }));
      row.forEach((count) => {
        const td = tr.insertCell();
        if (count === null) {
          td.textContent = `<${minRows}`;
          td.title = `fewer than ${minRows} rows: not shown`;
          return;
        }
        td.textContent = count;
        td.style.background = `rgba(59, 91, 219, ${0.08 + 0.72 * (count / max)})`;
        if (count / max > 0.5) td.style.color = "#fff";
      });
    });
    return table;
  }

  window.MarketplaceCharts = { bars, curve, heatmap, confusion, timeline, datasetLabel };
})();
