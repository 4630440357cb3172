// cryodyna report.html: renders the embedded run data with the inlined plotly.js (no network).
"use strict";
const D = JSON.parse(document.getElementById("report-data").textContent);
// Structures travel as base64 int16 steps about their centre (run_report.py _packed): back to [K][N][3] Å.
function unpack(p) {
  const bytes = Uint8Array.from(atob(p.int16), c => c.charCodeAt(0));
  const q = new Int16Array(bytes.buffer), [k, n] = p.shape, out = [];
  for (let m = 0; m < k; m++) {
    const frame = [];
    for (let i = 0; i < n; i++) { const o = 3 * (m * n + i); frame.push([0, 1, 2].map(a => p.origin[a] + p.step * q[o + a])); }
    out.push(frame);
  }
  return out;
}
if (D.deformation) {
  for (const t of Object.values(D.deformation.trajectories)) t.coords = unpack(t.coords);
  if (D.deformation.centre_models) D.deformation.centre_models.coords = unpack(D.deformation.centre_models.coords);
}
const status = document.getElementById("js-status");
let pending = 0;
// Every plot: its title left-aligned just above the plotting area (below the toolbar, which stays
// in the top margin), numbers as 10^n instead of SI prefixes ("100µ" on a loss axis).
function plot(div, traces, layout, config) {
  pending += 1;
  const full = Object.assign({margin: {t: 70, r: 10}}, layout);
  if (full.title) full.title = Object.assign({x: 0, xref: "paper", xanchor: "left", y: 1, yref: "paper", yanchor: "bottom", pad: {b: 10}}, full.title);
  for (const axis of ["xaxis", "yaxis", ...Object.keys(full).filter(k => /^[xy]axis\d+$/.test(k))])
    full[axis] = Object.assign({exponentformat: "power"}, full[axis]);
  return Plotly.newPlot(div, traces, full, Object.assign({responsive: true, displaylogo: false}, config || {})).then(() => {
    new ResizeObserver(() => Plotly.Plots.resize(div)).observe(div);  // a scrollbar or a wrapped row changes the box, not the window
    status.dataset.rendered = String(Number(status.dataset.rendered) + 1);
    pending -= 1;
    if (pending === 0) finished();
  });
}
// Layout facts for the browser test, once the plots have followed their boxes: the page's width
// beyond the window, and plots drawn wider than their box.
function finished() {
  setTimeout(measure, 500);
}
function measure() {
  const overflow = Math.max(0, document.documentElement.scrollWidth - document.documentElement.clientWidth);
  const wide = [...document.querySelectorAll(".js-plotly-plot")].filter(div => {
    const svg = div.querySelector(".main-svg");
    return svg && svg.getBoundingClientRect().width > div.getBoundingClientRect().width + 1;
  });
  status.dataset.overflowPx = String(overflow);
  status.dataset.widePlots = wide.map(d => d.id).join(" ");
  status.dataset.done = "true";
}
// Axis range holding the central 99 % of the values (with a margin): one outlier particle does not
// squeeze the rest into a corner; double-clicking the plot shows everything.
function robustRange(values) {
  const v = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (!v.length) return undefined;
  const q = f => v[Math.min(v.length - 1, Math.floor(f * (v.length - 1)))];
  const lo = q(0.005), hi = q(0.995), pad = 0.08 * (hi - lo || 1);
  return [lo - pad, hi + pad];
}
function add(parent, tag, props, text) {
  const e = document.createElement(tag);
  Object.assign(e, props || {});
  if (text !== undefined) e.textContent = text;
  parent.appendChild(e);
  return e;
}
const fmt = (v, d) => (v === null || v === undefined ? "–" : typeof v !== "number" ? String(v) : Number.isInteger(v) && d === undefined ? String(v) : v.toFixed(d === undefined ? 3 : d));

// ---------------------------------------------------------------- summary card
(function summary() {
  const s = D.summary, card = document.getElementById("summary");
  const item = (label, value, cls) => { const d = add(card, "div", {className: cls || ""}); add(d, "b", {}, label); add(d, "span", {}, value); };
  item("status", `${s.status}${s.step !== undefined && s.step !== null ? ` (step ${s.step} of ${s.total_steps})` : ""}`);
  item("command", `train-${s.task}`);
  for (const [k, v] of Object.entries(s.inputs)) item(k, v);
  const names = {n_particles: "particles", box: "box (px)", apix: "pixel size (Å/px)", lowpass: "low-pass (Å)", n_nodes: "nodes"};
  for (const [k, v] of Object.entries(s.data)) item(names[k] || k, fmt(v));
  item("device", s.device);
  item("speed (images/s)", fmt(s.images_per_s, 1));
  item("evaluation", s.evaluation || "none yet");
  for (const [k, v] of Object.entries(s.losses)) item(k.replace(/_/g, " "), fmt(v, 4));
  const d = D.deformation;
  if (d) {
    for (const [pc, m] of Object.entries(d.motion))
      item(`motion along ${pc.toUpperCase()} (first → last frame)`, `${fmt(m.first_to_last_rmsd_a, 2)} Å RMSD, largest node ${fmt(m.max_node_displacement_a, 1)} Å`);
    if (d.geometry.bond_rms_change_a !== undefined) item("consecutive-node distances vs reference (RMS change)", `${fmt(d.geometry.bond_rms_change_a, 3)} Å`);
    if (d.geometry.clash_fraction !== undefined) item("node pairs closer than 3 Å (centre structures)", `${fmt(100 * d.geometry.clash_fraction, 3)} %`);
  }
  item("warnings", s.warnings.length ? s.warnings.join("; ") : "none", s.warnings.length ? "warn" : "");
})();

// ---------------------------------------------------------------- deformation runs
function displacement(coords, reference) {
  return coords.map((x, i) => (reference ? Math.hypot(x[0] - reference[i][0], x[1] - reference[i][1], x[2] - reference[i][2]) : 0));
}
function traceXYZ(coords, chains, labels) {
  const out = {x: [], y: [], z: [], text: [], idx: []};
  coords.forEach((p, i) => {
    if (i > 0 && chains[i] !== chains[i - 1]) { out.x.push(null); out.y.push(null); out.z.push(null); out.text.push(""); out.idx.push(-1); }
    out.x.push(p[0]); out.y.push(p[1]); out.z.push(p[2]); out.text.push(labels[i]); out.idx.push(i);
  });
  return out;
}
function viewerTrace(coords, meta, reference) {
  const t = traceXYZ(coords, meta.chains, meta.labels), disp = displacement(coords, reference);
  const color = t.idx.map(i => (i < 0 ? 0 : disp[i]));
  return {type: "scatter3d", mode: "lines+markers", x: t.x, y: t.y, z: t.z, text: t.text, connectgaps: false,
          hovertemplate: "%{text}<br>displacement %{marker.color:.2f} Å<extra></extra>",
          line: {width: 4, color: "#999"},
          marker: {size: 3, color: color, colorscale: "Viridis", cmin: 0, cmax: Math.max(1, ...disp), colorbar: {title: {text: "Å from reference"}}}};
}

(function deformation() {
  const d = D.deformation;
  if (!d) return;
  const root = document.getElementById("deformation");
  add(root, "h2", {}, "Latent space");
  const controls = add(root, "div");
  add(controls, "label", {}, "colour by ");
  const colourBy = add(controls, "select", {id: "colour-by"});
  const nPC = d.scores[0].length;
  for (let k = 0; k < nPC; k++) add(colourBy, "option", {value: `pc${k}`}, `PC${k + 1} score`);
  add(colourBy, "option", {value: "cluster"}, "k-means cluster");
  add(controls, "span", {}, "  — drag a lasso or box to select particles; click a numbered centre to view its structure");
  if (d.shown) add(root, "p", {id: "subset-note"}, `Showing a random ${d.shown.length.toLocaleString("en")} of ` +
                   `${d.particles.toLocaleString("en")} particles (all of them are in z.npy); a selection exports those shown. ` +
                   "For every particle in a region, use cryodyna cluster --zbox or --pc with --range.");
  const particle = row => (d.shown ? d.shown[row] : row);
  const row = add(root, "div", {className: "row"});
  const latent = add(row, "div", {id: "latent", className: "plot"});
  const umapDiv = d.umap ? add(row, "div", {id: "umap", className: "plot"}) : null;
  const selection = add(root, "div", {id: "selection"}, "No particles selected.");
  const xs = d.scores.map(r => r[0]), ys = d.scores.map(r => (nPC > 1 ? r[1] : 0));
  const colours = key => (key === "cluster" ? d.labels : d.scores.map(r => r[Number(key.slice(2))]));
  const scatter = (x, y, title, xl, yl) => [
    {type: "scattergl", mode: "markers", x: x, y: y, marker: {size: 4, color: colours("pc0"), colorscale: "Viridis", showscale: true, colorbar: {title: {text: "PC1"}}},
     customdata: xs.map((_, row) => particle(row)), hovertemplate: "particle %{customdata}<extra></extra>", name: "particles"},
    {type: "scatter", mode: "markers+text", x: d.centre_rows.map(i => x[i]), y: d.centre_rows.map(i => y[i]), text: d.centres.map((_, k) => String(k)),
     textposition: "top right", marker: {size: 11, color: "red", line: {color: "white", width: 1}}, name: "k-means centres",
     hovertemplate: "centre %{text} (particle %{customdata})<extra></extra>", customdata: d.centres}];
  const layout = (title, x, y, xl, yl) => {
    const xr = robustRange(x), yr = robustRange(y);
    const outside = x.filter((v, i) => xr && yr && (v < xr[0] || v > xr[1] || y[i] < yr[0] || y[i] > yr[1])).length;
    return {title: {text: outside ? `${title} (${outside} outlying particles beyond the axes: double-click to show all)` : title},
            dragmode: "lasso", xaxis: {title: {text: xl}, range: xr}, yaxis: {title: {text: yl}, range: yr}, showlegend: false};
  };
  plot(latent, scatter(xs, ys), layout("principal components", xs, ys, "PC1 score", nPC > 1 ? "PC2 score" : "")).then(() => hookLatent(latent));
  if (umapDiv) {
    const ux = d.umap.map(r => r[0]), uy = d.umap.map(r => r[1]);
    plot(umapDiv, scatter(ux, uy), layout("UMAP", ux, uy, "UMAP 1", "UMAP 2")).then(() => hookLatent(umapDiv));
  }
  colourBy.addEventListener("change", () => {
    const key = colourBy.value, title = key === "cluster" ? "cluster" : `PC${Number(key.slice(2)) + 1}`;
    for (const div of [latent, umapDiv].filter(Boolean))
      Plotly.restyle(div, {"marker.color": [colours(key)], "marker.colorbar.title.text": title, "marker.colorscale": key === "cluster" ? "Portland" : "Viridis"}, [0]);
  });
  function hookLatent(div) {
    div.on("plotly_selected", onSelect);
    div.on("plotly_click", ev => { const p = ev.points[0]; if (p.curveNumber === 1 && d.centre_models) select(`centre-${p.pointNumber}`); });
  }
  const onSelect = ev => {
    const idx = ev && ev.points ? ev.points.filter(p => p.curveNumber === 0).map(p => particle(p.pointIndex)).sort((a, b) => a - b) : [];
    selection.textContent = "";
    if (!idx.length) { selection.textContent = "No particles selected."; return; }
    add(selection, "b", {}, `${idx.length} particles selected `);
    const blob = new Blob([idx.join("\n") + "\n"], {type: "text/plain"});
    add(selection, "a", {href: URL.createObjectURL(blob), download: "selected_particles.txt", id: "download-selection"}, "download their indices");
    add(selection, "span", {}, " then write them as a STAR subset: ");
    add(selection, "code", {}, `cryodyna cluster ${D.run} --indices selected_particles.txt -o ${D.run}/selection`);
    selection.dataset.count = String(idx.length);
  };

  // 3-D viewer
  add(root, "h2", {}, "Structures");
  const vcontrols = add(root, "div");
  const which = add(vcontrols, "select", {id: "viewer-source"});
  for (const name of Object.keys(d.trajectories)) add(which, "option", {value: name}, `${name.toUpperCase()} trajectory`);
  if (d.centre_models) d.centre_models.coords.forEach((_, k) => add(which, "option", {value: `centre-${k}`}, `k-means centre ${k}`));
  const play = add(vcontrols, "button", {id: "play"}, "play");
  const frameLabel = add(vcontrols, "span", {id: "frame"}, "");
  const vrow = add(root, "div", {className: "row"});
  const viewer = add(vrow, "div", {id: "viewer", className: "plot"});
  const rmsfDiv = add(vrow, "div", {id: "rmsf", className: "plot"});
  let frames = [], meta = null, frame = 0, timer = null;
  const source = name => {
    if (name.startsWith("centre-")) { const k = Number(name.slice(7)); return {meta: d.centre_models, frames: [d.centre_models.coords[k]]}; }
    return {meta: d.trajectories[name], frames: d.trajectories[name].coords};
  };
  const show = () => {
    const t = viewerTrace(frames[frame], meta, d.reference);
    Plotly.restyle(viewer, {x: [t.x], y: [t.y], z: [t.z], "marker.color": [t.marker.color]}, [0]);
    frameLabel.textContent = frames.length > 1 ? ` frame ${frame + 1} of ${frames.length}` : "";
  };
  const select = name => { const s = source(name); meta = s.meta; frames = s.frames; frame = 0; which.value = name; show(); };
  const first = source(which.value);
  meta = first.meta; frames = first.frames;
  plot(viewer, [viewerTrace(frames[0], meta, d.reference)],
       {title: {text: "nodes coloured by displacement from the reference"}, scene: {aspectmode: "data", xaxis: {title: {text: "x (Å)"}}, yaxis: {title: {text: "y (Å)"}}, zaxis: {title: {text: "z (Å)"}}}, uirevision: "keep"})
    .then(() => { frameLabel.textContent = frames.length > 1 ? ` frame 1 of ${frames.length}` : ""; });
  which.addEventListener("change", () => select(which.value));
  play.addEventListener("click", () => {
    if (timer) { clearInterval(timer); timer = null; play.textContent = "play"; return; }
    play.textContent = "pause";
    timer = setInterval(() => { frame = (frame + 1) % frames.length; show(); }, 300);
  });

  const any = Object.values(d.trajectories)[0];
  plot(rmsfDiv, Object.entries(d.motion).map(([pc, m]) => ({type: "scatter", mode: "lines", name: pc.toUpperCase(), y: m.rmsf_a, x: any.labels,
                                                             hovertemplate: "%{x}: %{y:.2f} Å<extra>" + pc.toUpperCase() + "</extra>"})),
       {title: {text: "RMSF along each PC trajectory"}, yaxis: {title: {text: "RMSF (Å)"}}, xaxis: {title: {text: "node (chain:residue atom)"}, showticklabels: any.labels.length < 60}});
  if (d.images.input_image) {
    add(root, "h2", {}, "Image previews");
    const r = add(root, "div", {className: "row"});
    add(r, "img", {src: d.images.input_image, alt: "low-passed particles"});
    add(r, "img", {src: d.images.pred_image, alt: "predicted images"});
  }
})();

// ---------------------------------------------------------------- half-set agreement (--halfsets runs)
(function halfsets() {
  const h = D.halfsets;
  if (!h) return;
  const root = document.getElementById("halfsets");
  add(root, "h2", {}, "Half-set agreement");
  add(root, "p", {className: h.warning ? "warn" : ""},
      `Two models trained on independent halves (${h.split}) predict every particle. RMS disagreement / RMS motion = ` +
      `${fmt(h.ratio, 2)} (reproducible below 0.5); median per-particle RMSD between the halves ${fmt(h.median_particle_rmsd, 2)} Å.` +
      (h.warning ? ` Warning: ${h.warning}` : ""));
  const x = h.labels.map((_, i) => i + 1);
  plot(add(root, "div", {className: "plot", id: "halfset-plot"}), [
    {type: "scatter", mode: "lines", name: "motion (RMS over particles)", x: x, y: h.motion, text: h.labels, hovertemplate: "%{text}: %{y:.2f} Å"},
    {type: "scatter", mode: "lines", name: "disagreement between halves", x: x, y: h.disagreement, text: h.labels, hovertemplate: "%{text}: %{y:.2f} Å"},
  ], {title: {text: "per node"}, xaxis: {title: {text: "node (in model order)"}}, yaxis: {title: {text: "Å"}}});
})();

// ---------------------------------------------------------------- density runs
(function maps() {
  if (!D.maps || !D.maps.length) return;
  const root = document.getElementById("maps");
  add(root, "h2", {}, "Maps (central slices)");
  const row = add(root, "div", {className: "row"});
  const divs = D.maps.map((m, i) => add(row, "div", {className: "plot", id: `map-${i}`}));  // all boxes first: each plot takes its final width
  D.maps.forEach((m, i) => {
    const div = divs[i];
    const names = ["x", "y", "z"];
    plot(div, m.slices.map((s, k) => ({type: "heatmap", z: s, colorscale: "Greys", showscale: k === 2, xaxis: `x${k + 1}`, yaxis: `y${k + 1}`, name: names[k]})),
         {title: {text: m.name}, grid: {rows: 1, columns: 3, pattern: "independent"}, height: 300});
  });
})();

// ---------------------------------------------------------------- losses, files, next steps
(function losses() {
  const root = document.getElementById("losses");
  const train = Object.entries(D.losses).filter(([k]) => k.startsWith("train:"));
  const evals = Object.entries(D.losses).filter(([k]) => k.startsWith("eval:"));
  const line = ([k, v]) => ({type: "scatter", mode: "lines", name: k.split(":")[1], x: v.step, y: v.value, connectgaps: false});
  const legend = {showlegend: true, legend: {orientation: "h", x: 0, y: -0.22, yanchor: "top"}, margin: {t: 70, r: 10, b: 40}};
  const trainDiv = train.length ? add(root, "div", {className: "plot", id: "train-losses"}) : null;
  const evalDiv = evals.length ? add(root, "div", {className: "plot", id: "eval-losses"}) : null;  // both boxes before plotting
  if (trainDiv) plot(trainDiv, train.map(line), Object.assign({title: {text: "training losses"}, xaxis: {title: {text: "training step"}},
                                                              yaxis: {title: {text: "loss term (image: 1 - correlation; priors: Å² or kT)"}, type: "log"}}, legend));
  if (evalDiv) plot(evalDiv, evals.map(e => Object.assign(line(e), {mode: "lines+markers"})),
                    Object.assign({title: {text: "evaluations"}, xaxis: {title: {text: "training step"}}, yaxis: {title: {text: "loss of the evaluation latents"}}}, legend));
  const files = document.getElementById("files");
  const link = (parent, path, label) => add(add(parent, "li"), "a", {href: path}, label);
  const top = add(files, "ul");
  for (const f of D.files.top) link(top, f, f);
  for (const group of D.files.folders) {
    const box = add(files, "details", {className: "folder"});
    add(box, "summary", {}, `${group.name}/ (${group.files.length} files)`);
    const ul = add(box, "ul");
    for (const f of group.files) link(ul, `${group.name}/${f}`, f);
  }
  document.getElementById("next").textContent = D.next.join("\n");
  if (pending === 0) finished();
})();
