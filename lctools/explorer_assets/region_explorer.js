/* lctools region explorer: activation regions of a 2D ReLU network, live in the browser.
 *
 * No kernel, no server, no CDN: lctools.explorer.region_explorer() inlines this file and the
 * exported weights into one HTML output, which runs in the static book, Jupyter and Colab.
 *
 * Notation (lctools, book/notation.md): z_1 = W_1 x + b_1, z_l = W_l sigma(z_{l-1}) + b_l.
 * On a raster of pixel centres x of the box K the module computes
 *   - the activation pattern (z_{l,i}(x) > 0)_{l,i}; a region = the pixels of one pattern;
 *   - the coarea estimator of local complexity (p uniform on K), as lctools.local_complexity:
 *       LC_s = E_eps E_x sum_{l,i} phi_s(zbar_{l,i}(x; eps)) * ||grad_x z_{l,i}(x; eps)||,
 *     one N(0, s^2) bias-noise draw eps per pixel (shared_noise=False), zbar = z - eps (the
 *     neuron's own noise left out, its trained bias kept), gradients by forward mode;
 *     the standard error is sd(per-pixel terms) / sqrt(#pixels);
 *   - the noiseless plug-in sum phi_s(z(x)) ||grad z(x)|| (noise_draws=0).
 */
(function () {
  "use strict";
  if (window.LCToolsExplorer) return;

  function decode(b64) { // little-endian float32, base64
    const bin = atob(b64), bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return new Float32Array(bytes.buffer);
  }

  function mulberry32(seed) {
    let a = seed >>> 0;
    return function () {
      a = (a + 0x6D2B79F5) >>> 0;
      let t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }

  function normals(n, seed) { // n standard normal numbers (Box-Muller), reproducible
    const rnd = mulberry32(seed), out = new Float32Array(n);
    for (let i = 0; i < n; i += 2) {
      const u = 1 - rnd(), v = rnd(), r = Math.sqrt(-2 * Math.log(u));
      out[i] = r * Math.cos(2 * Math.PI * v);
      if (i + 1 < n) out[i + 1] = r * Math.sin(2 * Math.PI * v);
    }
    return out;
  }

  /* One network: hidden layers only. W[l] is (n_l x n_{l-1}) row-major, b[l] is (n_l). */
  function Net(widths, slopes, flat) {
    this.widths = widths; this.slopes = slopes; this.W = []; this.b = [];
    let k = 0, prev = 2;
    for (let l = 0; l < widths.length; l++) {
      const n = widths[l];
      this.W.push(flat.subarray(k, k + n * prev)); k += n * prev;
      this.b.push(flat.subarray(k, k + n)); k += n;
      prev = n;
    }
    if (k !== flat.length) throw new Error("lctools explorer: weights do not match the widths");
    this.neurons = widths.reduce((a, c) => a + c, 0);
  }

  /* Evaluate the net on an nx x ny raster of pixel centres of bounds (row 0 = top).
   * opts: sigma, noise (Float32Array of nx*ny*neurons standard normals, per-pixel noise)
   * or shared (Float64Array of neurons standard normals added to the biases, times shared_s).
   * Returns {keys (Float64Array of pattern hashes), lc (per-pixel LC terms) or null, plugin}. */
  function evaluate(net, bounds, nx, ny, opts) {
    const L = net.widths.length, maxw = Math.max.apply(null, net.widths);
    const sigma = opts.sigma, wantLC = !!opts.lc;
    const c = 1 / (sigma * Math.sqrt(2 * Math.PI)), inv2s2 = 1 / (2 * sigma * sigma);
    const h = new Float64Array(maxw), hn = new Float64Array(maxw);
    const g0 = new Float64Array(maxw), g1 = new Float64Array(maxw);
    const gn0 = new Float64Array(maxw), gn1 = new Float64Array(maxw);
    const keys = new Float64Array(nx * ny);
    const lc = wantLC ? new Float64Array(nx * ny) : null;
    const plug = wantLC ? new Float64Array(nx * ny) : null;
    const [x0, x1, y0, y1] = bounds;
    const noise = opts.noise, shared = opts.shared, sharedS = opts.sharedS || 0;
    let p = 0;
    for (let row = 0; row < ny; row++) {
      const y = y1 - (row + 0.5) * (y1 - y0) / ny;
      for (let col = 0; col < nx; col++, p++) {
        const x = x0 + (col + 0.5) * (x1 - x0) / nx;
        let h1 = 0x811c9dc5 | 0, h2 = 0x1b873593 | 0, bit = 0, term = 0, pterm = 0;
        let eoff = noise ? p * net.neurons : 0, soff = 0;
        // pass 1: the network (noiseless, or with one shared noise draw) -> pattern (+ plug-in)
        let prevN = 2;
        for (let l = 0; l < L; l++) {
          const n = net.widths[l], W = net.W[l], b = net.b[l], a = net.slopes[l];
          for (let i = 0; i < n; i++) {
            let z = b[i], gx, gy;
            if (shared) z += sharedS * shared[soff + i];
            if (l === 0) { z += W[2 * i] * x + W[2 * i + 1] * y; gx = W[2 * i]; gy = W[2 * i + 1]; }
            else {
              gx = 0; gy = 0;
              const r = i * prevN;
              for (let j = 0; j < prevN; j++) { const w = W[r + j]; z += w * h[j]; gx += w * g0[j]; gy += w * g1[j]; }
            }
            const on = z > 0;
            if (wantLC) pterm += c * Math.exp(-z * z * inv2s2) * Math.sqrt(gx * gx + gy * gy);
            hn[i] = on ? z : a * z; gn0[i] = on ? gx : a * gx; gn1[i] = on ? gy : a * gy;
            if (on) { h1 = Math.imul(h1 ^ (bit + 1), 0x01000193); h2 = Math.imul(h2 ^ (bit + 7), 0x5bd1e995); }
            bit++;
          }
          soff += n;
          for (let i = 0; i < n; i++) { h[i] = hn[i]; g0[i] = gn0[i]; g1[i] = gn1[i]; }
          prevN = n;
        }
        keys[p] = (h1 >>> 0) * 2097152 + ((h2 >>> 0) & 2097151);
        if (!wantLC) continue;
        plug[p] = pterm;
        // pass 2: the perturbed network z(x; eps), eps = sigma * noise, one draw per pixel
        prevN = 2;
        for (let l = 0; l < L; l++) {
          const n = net.widths[l], W = net.W[l], b = net.b[l], a = net.slopes[l];
          for (let i = 0; i < n; i++) {
            const eps = sigma * noise[eoff + i];
            let zbar = b[i], gx, gy;
            if (l === 0) { zbar += W[2 * i] * x + W[2 * i + 1] * y; gx = W[2 * i]; gy = W[2 * i + 1]; }
            else {
              gx = 0; gy = 0;
              const r = i * prevN;
              for (let j = 0; j < prevN; j++) { const w = W[r + j]; zbar += w * h[j]; gx += w * g0[j]; gy += w * g1[j]; }
            }
            term += c * Math.exp(-zbar * zbar * inv2s2) * Math.sqrt(gx * gx + gy * gy);
            const z = zbar + eps, on = z > 0;
            hn[i] = on ? z : a * z; gn0[i] = on ? gx : a * gx; gn1[i] = on ? gy : a * gy;
          }
          eoff += n;
          for (let i = 0; i < n; i++) { h[i] = hn[i]; g0[i] = gn0[i]; g1[i] = gn1[i]; }
          prevN = n;
        }
        lc[p] = term;
      }
    }
    return {keys: keys, lc: lc, plugin: plug};
  }

  function meanSE(v) {
    let s = 0, s2 = 0;
    for (let i = 0; i < v.length; i++) { s += v[i]; }
    const m = s / v.length;
    for (let i = 0; i < v.length; i++) { const d = v[i] - m; s2 += d * d; }
    return [m, Math.sqrt(s2 / (v.length - 1) / v.length)];
  }

  function countDistinct(keys) { return new Set(keys).size; }

  function keyColor(key) { // a light colour per pattern, stable across frames
    const hue = (key % 360 + 360) % 360, sat = 55 + (Math.floor(key / 360) % 30);
    const lig = 72 + (Math.floor(key / 10800) % 14);
    const s = sat / 100, l = lig / 100, k = n => (n + hue / 30) % 12;
    const a = s * Math.min(l, 1 - l), f = n => l - a * Math.max(-1, Math.min(k(n) - 3, Math.min(9 - k(n), 1)));
    return [Math.round(255 * f(0)), Math.round(255 * f(8)), Math.round(255 * f(4))];
  }

  const MAGMA = [[0, 0, 4], [28, 16, 68], [79, 18, 123], [129, 37, 129], [181, 54, 122],
                 [229, 80, 100], [251, 135, 97], [254, 194, 135], [252, 253, 191]];
  function magma(t) {
    t = Math.max(0, Math.min(1, t)) * (MAGMA.length - 1);
    const i = Math.min(Math.floor(t), MAGMA.length - 2), f = t - i, a = MAGMA[i], b = MAGMA[i + 1];
    return [a[0] + f * (b[0] - a[0]), a[1] + f * (b[1] - a[1]), a[2] + f * (b[2] - a[2])];
  }

  function fmt(v) { return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2); }

  function Explorer(root, data) {
    this.root = root; this.data = data; this.nx = data.nx; this.ny = data.ny;
    this.runs = data.runs.map(r => ({name: r.name, steps: r.steps,
      nets: r.snapshots.map(s => new Net(r.widths, r.slopes, decode(s)))}));
    const maxNeurons = Math.max.apply(null, this.runs.map(r => r.nets[0].neurons));
    this.noise = normals(this.nx * this.ny * maxNeurons, data.seed * 2 + 1);
    this.shared = normals(maxNeurons, data.seed * 2 + 2);
    this.q = sel => root.querySelector(sel);
    this.canvas = this.q("canvas.lcx-canvas");
    this.frames = 0;
    const self = this;
    this.q(".lcx-run").addEventListener("change", () => { self.setRun(); self.schedule(); });
    ["step", "sigma"].forEach(n => this.q(".lcx-" + n).addEventListener("input", () => self.schedule()));
    this.q(".lcx-view").addEventListener("change", () => self.schedule());
    this.setRun();
    this.draw();
  }

  Explorer.prototype.setRun = function () {
    const run = this.runs[+this.q(".lcx-run").value], slider = this.q(".lcx-step");
    const keep = slider.dataset.ready ? +slider.value / Math.max(1, +slider.max) : 1;
    slider.max = run.steps.length - 1;
    slider.value = Math.round(keep * (run.steps.length - 1));
    slider.dataset.ready = "1";
  };

  Explorer.prototype.sigma = function () {
    const d = this.data, t = +this.q(".lcx-sigma").value / 1000;
    return d.sigma_min * Math.pow(d.sigma_max / d.sigma_min, t);
  };

  Explorer.prototype.schedule = function () {
    if (this.pending) return;
    this.pending = true;
    const self = this;
    window.requestAnimationFrame(() => { self.pending = false; self.draw(); });
  };

  /* The numbers of one view, without drawing (the tests call this too). */
  Explorer.prototype.compute = function (runIndex, stepIndex, sigma, view) {
    const run = this.runs[runIndex], net = run.nets[stepIndex];
    const out = evaluate(net, this.data.bounds, this.nx, this.ny, {sigma: sigma, lc: true, noise: this.noise});
    if (view === "noisy") { // the picture: one draw of the perturbed network, eps = s * xi
      out.keys = evaluate(net, this.data.bounds, this.nx, this.ny,
                          {sigma: sigma, shared: this.shared, sharedS: sigma}).keys;
    }
    const [lc, se] = meanSE(out.lc), [plug] = meanSE(out.plugin);
    return {regions: countDistinct(out.keys), lc: lc, lc_se: se, plugin: plug, out: out,
            step: run.steps[stepIndex], run: run.name, sigma: sigma, nx: this.nx, ny: this.ny};
  };

  Explorer.prototype.draw = function () {
    const runIndex = +this.q(".lcx-run").value, stepIndex = +this.q(".lcx-step").value;
    const sigma = this.sigma(), view = this.q(".lcx-view").value, nx = this.nx, ny = this.ny;
    const r = this.compute(runIndex, stepIndex, sigma, view);
    this.last = {regions: r.regions, lc: r.lc, lc_se: r.lc_se, plugin: r.plugin, step: r.step,
                 run: r.run, sigma: sigma, view: view};
    const img = new ImageData(nx, ny), px = img.data, keys = r.out.keys;
    let vmax = 0;
    if (view === "lc") for (let i = 0; i < r.out.lc.length; i++) vmax = Math.max(vmax, r.out.lc[i]);
    for (let row = 0, p = 0; row < ny; row++) {
      for (let col = 0; col < nx; col++, p++) {
        let rgb;
        if (view === "lc") rgb = magma(Math.sqrt(r.out.lc[p] / (vmax || 1)));
        else { // region colour, darkened on the pixels where the pattern changes (boundaries)
          const edge = (col + 1 < nx && keys[p + 1] !== keys[p]) || (row + 1 < ny && keys[p + nx] !== keys[p]);
          rgb = keyColor(keys[p]);
          if (edge) rgb = [0.45 * rgb[0], 0.45 * rgb[1], 0.45 * rgb[2]];
        }
        px[4 * p] = rgb[0]; px[4 * p + 1] = rgb[1]; px[4 * p + 2] = rgb[2]; px[4 * p + 3] = 255;
      }
    }
    const ctx = this.canvas.getContext("2d"), W = this.canvas.width, H = this.canvas.height;
    if (!this.buffer) { this.buffer = document.createElement("canvas"); this.buffer.width = nx; this.buffer.height = ny; }
    this.buffer.getContext("2d").putImageData(img, 0, 0);
    ctx.imageSmoothingEnabled = false;
    ctx.clearRect(0, 0, W, H);
    ctx.drawImage(this.buffer, 0, 0, W, H);
    const pts = this.data.points, [x0, x1, y0, y1] = this.data.bounds;
    if (pts && this.q(".lcx-points").checked) {
      for (let i = 0; i < pts.x.length; i++) {
        ctx.fillStyle = pts.label[i] ? "rgb(214,39,40)" : "rgb(31,119,180)";
        ctx.strokeStyle = "white"; ctx.lineWidth = 1.5;
        ctx.beginPath();
        ctx.arc((pts.x[i] - x0) / (x1 - x0) * W, (y1 - pts.y[i]) / (y1 - y0) * H, 4, 0, 2 * Math.PI);
        ctx.fill(); ctx.stroke();
      }
    }
    this.frames++;
    this.q(".lcx-step-value").textContent = String(r.step);
    this.q(".lcx-sigma-value").textContent = sigma.toPrecision(2);
    this.q(".lcx-regions").textContent = String(r.regions);
    this.q(".lcx-lc").textContent = fmt(r.lc) + " \u00b1 " + fmt(r.lc_se);
    this.q(".lcx-plugin").textContent = fmt(r.plugin);
    this.root.dataset.frames = String(this.frames);
  };

  window.LCToolsExplorer = {
    instances: {},
    mount: function (id) {
      const root = document.getElementById(id);
      if (!root || root.dataset.mounted) return;
      root.dataset.mounted = "1";
      const data = JSON.parse(root.querySelector("script.lcx-data").textContent);
      this.instances[id] = new Explorer(root, data);
    },
    evaluate: evaluate, normals: normals, decode: decode, Net: Net,
  };
})();
