//! The time-gated MLP of the 2D workflow (SimpleNet: layers y = (x·W + b) ⊙ gate(t), gate =
//! Linear(SiLU(Linear(sinusoid(t)))), ReLU between layers): its training step and sampling
//! forward, fused by hand on preallocated host f32 buffers. The network itself (a burn
//! module) lives in `diffuse::nn::simplenet`, which moves its weights in and out of the flat
//! layout here.
//!
//! A reference training step is ~140 MFLOP spread over ~60 small tensor operations; through
//! the autodiff graph its time goes to per-operation overhead (allocation, dispatch,
//! threading GEMMs too small to split), not arithmetic. Here one step is 15 GEMMs (the `gemm`
//! crate's kernels, single-threaded) and a few element-wise passes over buffers allocated
//! once. The arithmetic is the same as burn's (the same products, sums and Adam update
//! formula), so results match the autodiff path to f32 rounding (`tests/simplenet_fused.rs` of
//! the main crate).
//! With several threads and at least 128 rows per thread, the batch is split into row blocks,
//! one per thread; the blocks' weight gradients are summed in block order, so a run is
//! reproducible for a given thread count (the reference batch of 128 runs as one block, so its
//! result does not depend on the thread count at all).
use rayon::prelude::*;

use crate::embedding::sinusoid_rows;
use crate::simd::{multiversion, sigmoid};
use crate::KernelError;

/// Where one TimeLinear's tensors sit in the flat parameter vector (burn's visiting order:
/// fc.weight [din, dout], fc.bias, mlp0.weight [freq, dout], mlp0.bias, mlp2.weight
/// [dout, dout], mlp2.bias).
#[derive(Debug, Clone, Copy)]
struct Layer {
    din: usize,
    dout: usize,
    fc_w: usize,
    fc_b: usize,
    m0_w: usize,
    m0_b: usize,
    m2_w: usize,
    m2_b: usize,
}

/// The network's parameters as one flat f32 vector in burn's visiting order.
#[derive(Debug, Clone)]
pub struct FlatNet {
    /// Widths d₀ → d₁ → … → d_L of the layers.
    pub dims: Vec<usize>,
    /// Width of the timestep sinusoid.
    pub freq: usize,
    /// Every parameter, layer by layer, in the order of the module's fields.
    pub params: Vec<f32>,
    layers: Vec<Layer>,
}

fn layout(dims: &[usize], freq: usize) -> (Vec<Layer>, usize) {
    let mut off = 0;
    let mut take = |n: usize| {
        let o = off;
        off += n;
        o
    };
    let layers = dims
        .windows(2)
        .map(|w| {
            let (din, dout) = (w[0], w[1]);
            Layer {
                din,
                dout,
                fc_w: take(din * dout),
                fc_b: take(dout),
                m0_w: take(freq * dout),
                m0_b: take(dout),
                m2_w: take(dout * dout),
                m2_b: take(dout),
            }
        })
        .collect();
    (layers, off)
}

impl FlatNet {
    /// A network of widths `dims` and sinusoid width `freq` with the parameters `params`
    /// (in visiting order).
    pub fn new(dims: Vec<usize>, freq: usize, params: Vec<f32>) -> Result<Self, KernelError> {
        if dims.len() < 2 || dims.contains(&0) || freq < 2 {
            return Err(KernelError(format!(
                "a time-gated MLP needs at least two non-zero widths and a sinusoid of width ≥ 2, got {dims:?} and {freq}"
            )));
        }
        let (layers, n) = layout(&dims, freq);
        if params.len() != n {
            return Err(KernelError(format!(
                "the network has {} parameters, expected {n}",
                params.len()
            )));
        }
        Ok(Self {
            dims,
            freq,
            params,
            layers,
        })
    }

    /// The length of every parameter tensor, in visiting order (how `params` splits).
    pub fn param_sizes(&self) -> Vec<usize> {
        self.layers
            .iter()
            .flat_map(|l| {
                [
                    l.din * l.dout,
                    l.dout,
                    self.freq * l.dout,
                    l.dout,
                    l.dout * l.dout,
                    l.dout,
                ]
            })
            .collect()
    }

    fn out_dim(&self) -> usize {
        *self.dims.last().expect("validated dims")
    }
}

/// c (m×n, row-major) = a·b, or c += a·b when `acc`; a and b given as (slice, row stride,
/// column stride) so transposes cost nothing. Single-threaded: the parallelism of the fused
/// path is over row blocks.
fn mm(
    m: usize,
    n: usize,
    k: usize,
    c: &mut [f32],
    acc: bool,
    a: (&[f32], usize, usize),
    b: (&[f32], usize, usize),
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(c.len() >= m * n, "mm: output too small");
    if k > 0 {
        assert!(
            a.0.len() > (m - 1) * a.1 + (k - 1) * a.2,
            "mm: lhs too small"
        );
        assert!(
            b.0.len() > (k - 1) * b.1 + (n - 1) * b.2,
            "mm: rhs too small"
        );
    }
    // SAFETY: the asserts above keep every index the kernel reads or writes inside the slices
    // (row-major c with row stride n; a[i·rs + p·cs] for i < m, p < k; likewise b).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            acc,
            a.0.as_ptr(),
            a.2 as isize,
            a.1 as isize,
            b.0.as_ptr(),
            b.2 as isize,
            b.1 as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// Row-major [rows, cols] view helpers for `mm`.
fn rm(v: &[f32], cols: usize) -> (&[f32], usize, usize) {
    (v, cols, 1)
}
/// The transpose of a row-major [rows, cols] matrix.
fn tr(v: &[f32], cols: usize) -> (&[f32], usize, usize) {
    (v, 1, cols)
}

/// Each row of `out` (rows × bias.len()) set to `bias`.
fn fill_rows(out: &mut [f32], bias: &[f32]) {
    for row in out.chunks_exact_mut(bias.len()) {
        row.copy_from_slice(bias);
    }
}

/// out = x·W + b for `rows` rows: x row-major [rows, din], W row-major [din, dout] (burn's
/// Linear layout), b [dout].
fn linear_rows(out: &mut [f32], x: &[f32], w: &[f32], b: &[f32], rows: usize, din: usize) {
    let dout = b.len();
    fill_rows(out, b);
    mm(rows, dout, din, out, true, rm(x, din), rm(w, dout));
}

/// Column sums of a row-major matrix into `out`.
fn col_sums(m: &[f32], out: &mut [f32]) {
    out.fill(0.0);
    for row in m.chunks_exact(out.len()) {
        for (o, v) in out.iter_mut().zip(row) {
            *o += v;
        }
    }
}

// The element-wise loops of the step, compiled for AVX-512, AVX2 and the baseline (the bodies
// are `#[inline(always)]`, so each copy is vectorised for its width; all give the same bits).
multiversion!(work_forward(w: &mut Work, net: &FlatNet, rows: usize, k: usize) {
    w.forward_body(net, rows, k)
});

multiversion!(work_backward(w: &mut Work, net: &FlatNet, eps: &[f32], rows: usize, k: usize, n_total: usize) {
    w.backward_body(net, eps, rows, k, n_total)
});

/// Gradients of a Linear's weight [din, dout] and bias, stored back to back in `out`, from its
/// input `x` (rows × din) and output gradient `dy` (rows × dout): xᵀ·dy and the column sums.
fn linear_param_grads(out: &mut [f32], x: &[f32], dy: &[f32], din: usize, dout: usize) {
    let rows = dy.len() / dout;
    let (gw, gb) = out.split_at_mut(din * dout);
    mm(din, dout, rows, gw, false, tr(x, din), rm(dy, dout));
    col_sums(dy, gb);
}

/// Activations and gradients of one block of rows; allocated once and reused every step.
#[derive(Default)]
struct Work {
    /// h[0] = input, h[l+1] = output of layer l (after ReLU for hidden layers).
    h: Vec<Vec<f32>>,
    /// fc(h[l]) per layer, rows × dout.
    a: Vec<Vec<f32>>,
    /// Embedding MLP pre-activation, its sigmoid and the gate, per layer, k × dout.
    u: Vec<Vec<f32>>,
    sig: Vec<Vec<f32>>,
    gate: Vec<Vec<f32>>,
    /// Scratch of the backward pass.
    dy: Vec<f32>,
    dh: Vec<f32>,
    da: Vec<f32>,
    dg: Vec<f32>,
    ds: Vec<f32>,
    /// Sinusoid rows (k × freq).
    freqs: Vec<f32>,
    /// Gradient of the block's share of the loss, in the parameter layout.
    grad: Vec<f32>,
    loss_sum: f64,
}

impl Work {
    /// [`Self::forward_body`] compiled for the widest vector extension the CPU has.
    fn forward(&mut self, net: &FlatNet, rows: usize, k: usize) {
        work_forward(self, net, rows, k)
    }

    /// [`Self::backward_body`] compiled for the widest vector extension the CPU has.
    fn backward(&mut self, net: &FlatNet, eps: &[f32], rows: usize, k: usize, n_total: usize) {
        work_backward(self, net, eps, rows, k, n_total)
    }

    fn resize(&mut self, net: &FlatNet, rows: usize, k: usize) {
        let nl = net.layers.len();
        let re = |v: &mut Vec<Vec<f32>>, n: usize, f: &dyn Fn(&Layer) -> usize| {
            v.resize_with(n, Vec::new);
            for (i, b) in v.iter_mut().enumerate() {
                b.resize(f(&net.layers[i.min(nl - 1)]), 0.0);
            }
        };
        self.h.resize_with(nl + 1, Vec::new);
        for (i, b) in self.h.iter_mut().enumerate() {
            b.resize(rows * net.dims[i], 0.0);
        }
        re(&mut self.a, nl, &|l| rows * l.dout);
        re(&mut self.u, nl, &|l| k * l.dout);
        re(&mut self.sig, nl, &|l| k * l.dout);
        re(&mut self.gate, nl, &|l| k * l.dout);
        let w = *net.dims.iter().max().expect("dims");
        for b in [&mut self.dy, &mut self.dh, &mut self.da] {
            b.resize(rows * w, 0.0);
        }
        self.dg.resize(k * w, 0.0);
        self.ds.resize(k * w, 0.0);
        self.freqs.resize(k * net.freq, 0.0);
    }

    /// Forward pass of `rows` rows in `k` equal groups (group g gated by sinusoid row g);
    /// the input must already be in h[0] and the sinusoid rows in `freqs`.
    #[inline(always)]
    fn forward_body(&mut self, net: &FlatNet, rows: usize, k: usize) {
        let p = &net.params;
        let gs = rows / k;
        let nl = net.layers.len();
        for (i, l) in net.layers.iter().enumerate() {
            let (din, dout) = (l.din, l.dout);
            // fc(h) = h·W + b (burn stores W as [din, dout]).
            linear_rows(
                &mut self.a[i],
                &self.h[i],
                &p[l.fc_w..l.fc_w + din * dout],
                &p[l.fc_b..l.fc_b + dout],
                rows,
                din,
            );
            // gate = Linear(SiLU(Linear(sinusoid))).
            let u = &mut self.u[i];
            linear_rows(
                u,
                &self.freqs,
                &p[l.m0_w..l.m0_w + net.freq * dout],
                &p[l.m0_b..l.m0_b + dout],
                k,
                net.freq,
            );
            // self.ds holds SiLU(u) until the backward pass needs it as scratch.
            let s = &mut self.ds[..k * dout];
            for ((s, sg), &u) in s.iter_mut().zip(self.sig[i].iter_mut()).zip(u.iter()) {
                let sigm = sigmoid(u);
                *sg = sigm;
                *s = u * sigm;
            }
            linear_rows(
                &mut self.gate[i],
                &self.ds[..k * dout],
                &p[l.m2_w..l.m2_w + dout * dout],
                &p[l.m2_b..l.m2_b + dout],
                k,
                dout,
            );
            // y = fc(h) ⊙ gate, ReLU between layers.
            let out = &mut self.h[i + 1];
            let relu = i + 1 < nl;
            for (r, (o, a)) in out
                .chunks_exact_mut(dout)
                .zip(self.a[i].chunks_exact(dout))
                .enumerate()
            {
                let g = &self.gate[i][(r / gs) * dout..(r / gs + 1) * dout];
                for ((o, a), g) in o.iter_mut().zip(a).zip(g) {
                    let y = a * g;
                    *o = if relu { y.max(0.0) } else { y };
                }
            }
        }
    }

    /// Backward pass after `forward`, for the loss Σ(y − ε)²/n_total over this block's rows
    /// (the block's share of the batch mean): fills `grad` and `loss_sum`.
    #[inline(always)]
    fn backward_body(&mut self, net: &FlatNet, eps: &[f32], rows: usize, k: usize, n_total: usize) {
        let p = &net.params;
        let gs = rows / k;
        let nl = net.layers.len();
        let dout = net.out_dim();
        // d/dy of mean((y − ε)²) = 2(y − ε)/n (burn differentiates (y − ε)² then the mean).
        let y = &self.h[nl];
        let mut loss = 0f64;
        for ((d, &y), &e) in self.dy[..rows * dout].iter_mut().zip(y).zip(eps) {
            let diff = y - e;
            loss += (diff as f64) * (diff as f64);
            *d = 2.0 * diff / n_total as f32;
        }
        self.loss_sum = loss;
        for i in (0..nl).rev() {
            let l = net.layers[i];
            let (din, dout) = (l.din, l.dout);
            let g = &self.gate[i];
            let a = &self.a[i];
            // da = dy ⊙ gate; dgate = Σ over the group's rows of dy ⊙ fc(h).
            let dg = &mut self.dg[..k * dout];
            dg.fill(0.0);
            for r in 0..rows {
                let grp = r / gs;
                let dy = &self.dy[r * dout..(r + 1) * dout];
                let gr = &g[grp * dout..(grp + 1) * dout];
                let ar = &a[r * dout..(r + 1) * dout];
                let da = &mut self.da[r * dout..(r + 1) * dout];
                let dgr = &mut dg[grp * dout..(grp + 1) * dout];
                for j in 0..dout {
                    da[j] = dy[j] * gr[j];
                    dgr[j] += dy[j] * ar[j];
                }
            }
            let grad = &mut self.grad;
            let da = &self.da[..rows * dout];
            linear_param_grads(&mut grad[l.fc_w..l.fc_b + dout], &self.h[i], da, din, dout);
            // Embedding MLP: gate = s·W2 + b2, s = SiLU(u), u = freqs·W0 + b0.
            let u = &self.u[i];
            let sig = &self.sig[i];
            let s = &mut self.ds[..k * dout];
            for ((s, &u), &sg) in s.iter_mut().zip(u.iter()).zip(sig.iter()) {
                *s = u * sg;
            }
            linear_param_grads(&mut grad[l.m2_w..l.m2_b + dout], s, dg, dout, dout);
            let ds = &mut self.ds[..k * dout];
            mm(
                k,
                dout,
                dout,
                ds,
                false,
                rm(dg, dout),
                tr(&p[l.m2_w..l.m2_w + dout * dout], dout),
            );
            // SiLU'(u) = σ(u)·(1 + u·(1 − σ(u))).
            for ((d, &u), &sg) in ds.iter_mut().zip(u.iter()).zip(sig.iter()) {
                *d *= sg * (1.0 + u * (1.0 - sg));
            }
            linear_param_grads(
                &mut grad[l.m0_w..l.m0_b + dout],
                &self.freqs,
                ds,
                net.freq,
                dout,
            );
            if i > 0 {
                // dh = da·Wᵀ, then through the previous layer's ReLU.
                let dh = &mut self.dh[..rows * din];
                mm(
                    rows,
                    din,
                    dout,
                    dh,
                    false,
                    rm(da, dout),
                    tr(&p[l.fc_w..l.fc_w + din * dout], dout),
                );
                for ((d, &h), &dh) in self.dy[..rows * din]
                    .iter_mut()
                    .zip(self.h[i].iter())
                    .zip(dh.iter())
                {
                    *d = if h > 0.0 { dh } else { 0.0 };
                }
            }
        }
    }
}

/// Adam state of the fused path, with burn's update formula (burn-optim 0.22 `Adam`).
struct AdamState {
    m: Vec<f32>,
    v: Vec<f32>,
    time: i32,
}

/// Adam's settings (Kingma & Ba 2015, Algorithm 1) and the gradient clipping before it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamSettings {
    /// β₁, decay of the first moment.
    pub beta1: f64,
    /// β₂, decay of the second moment.
    pub beta2: f64,
    /// ε of the denominator.
    pub eps: f64,
    /// Clip the gradient's global L2 norm to this before the update (None: no clipping).
    pub grad_clip: Option<f64>,
}

/// The fused training step: data in, updated weights out.
pub struct FusedTrainer {
    pub net: FlatNet,
    optim: AdamSettings,
    adam: AdamState,
    /// Summed gradient of the last step (parameter layout).
    pub grad: Vec<f32>,
    blocks: Vec<Work>,
}

impl FusedTrainer {
    /// A trainer starting from the weights of `net`, with the Adam settings `optim`.
    pub fn new(net: FlatNet, optim: AdamSettings) -> Self {
        let n = net.params.len();
        Self {
            net,
            optim,
            adam: AdamState {
                m: vec![0.0; n],
                v: vec![0.0; n],
                time: 0,
            },
            grad: vec![0.0; n],
            blocks: Vec::new(),
        }
    }

    /// Row blocks for a batch of `b` rows in `k` groups: one per rayon thread when the groups
    /// split evenly and each block keeps at least 128 rows, else one. Measured (BENCHMARKS.md,
    /// "2D workflow after issue 13"): at the reference batch of 128, two blocks of 64 rows on
    /// two threads trained no faster than one block on one thread.
    fn num_blocks(b: usize, k: usize) -> usize {
        let t = rayon::current_num_threads().max(1);
        if t > 1 && k.is_multiple_of(t) && b.is_multiple_of(t) && b / t >= 128 {
            t
        } else {
            1
        }
    }

    /// Loss mean((ε_θ(x_t, t) − ε)²) and its gradient (in `self.grad`) for a batch of `b`
    /// rows (`x_t`, `eps`: b × 2) in `t.len()` equal groups of consecutive rows, group g at
    /// integer timestep t[g] (t.len() = b: one timestep per row).
    pub fn loss_and_grad(
        &mut self,
        x_t: &[f32],
        eps: &[f32],
        t: &[usize],
    ) -> Result<f64, KernelError> {
        let din = self.net.dims[0];
        let dout = self.net.out_dim();
        let b = x_t.len() / din;
        let k = t.len();
        if k == 0 || !b.is_multiple_of(k) || x_t.len() != b * din || eps.len() != b * dout {
            return Err(KernelError(format!(
                "batch of {} inputs, {} targets and {k} timestep groups do not fit dims {:?}",
                x_t.len(),
                eps.len(),
                self.net.dims
            )));
        }
        let nb = Self::num_blocks(b, k);
        let (rows, kb) = (b / nb, k / nb);
        self.blocks.resize_with(nb, Work::default);
        let net = &self.net;
        let run = |(j, w): (usize, &mut Work)| {
            w.resize(net, rows, kb);
            w.grad.resize(net.params.len(), 0.0);
            w.h[0].copy_from_slice(&x_t[j * rows * din..(j + 1) * rows * din]);
            sinusoid_rows(&t[j * kb..(j + 1) * kb], net.freq, &mut w.freqs);
            w.forward(net, rows, kb);
            w.backward(
                net,
                &eps[j * rows * dout..(j + 1) * rows * dout],
                rows,
                kb,
                b * dout,
            );
        };
        if nb == 1 {
            run((0, &mut self.blocks[0]));
        } else {
            self.blocks.par_iter_mut().enumerate().for_each(run);
        }
        // Blocks summed in order: the same result for the same thread count.
        if nb == 1 {
            std::mem::swap(&mut self.grad, &mut self.blocks[0].grad);
        } else {
            self.grad.copy_from_slice(&self.blocks[0].grad);
            for w in &self.blocks[1..] {
                for (g, v) in self.grad.iter_mut().zip(&w.grad) {
                    *g += v;
                }
            }
        }
        let loss: f64 = self.blocks.iter().map(|w| w.loss_sum).sum();
        Ok(loss / (b * dout) as f64)
    }

    /// One Adam step at learning rate `lr` with the gradient in `self.grad`, after clipping
    /// its global norm to `optim.grad_clip` like `train::clip_grads` (PyTorch's
    /// clip_grad_norm_). burn's Adam: m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g²,
    /// θ ← θ − lr·m·(√(1−β₂ᵗ)/(1−β₁ᵗ)) / (√v + ε·√(1−β₂ᵗ)) (Kingma & Ba, Alg. 1, with ε
    /// moved inside the bias correction as burn does).
    pub fn adam_step(&mut self, lr: f64) {
        if let Some(max_norm) = self.optim.grad_clip {
            // Summed in f64: 10⁵ squares summed in f32 would lose digits to the order.
            let norm = self
                .grad
                .iter()
                .map(|&g| g as f64 * g as f64)
                .sum::<f64>()
                .sqrt() as f32;
            let scale = (max_norm as f32 / (norm + 1e-6)).min(1.0);
            self.grad.iter_mut().for_each(|g| *g *= scale);
        }
        let (b1, b2, eps) = (
            self.optim.beta1 as f32,
            self.optim.beta2 as f32,
            self.optim.eps as f32,
        );
        let st = &mut self.adam;
        st.time += 1;
        let bc2 = (1.0 - b2.powi(st.time)).sqrt();
        let factor = bc2 / (1.0 - b1.powi(st.time));
        let (f1, f2, eps_c, lr) = (1.0 - b1, 1.0 - b2, eps * bc2, lr as f32);
        adam_update(
            &mut self.net.params,
            &mut st.m,
            &mut st.v,
            &self.grad,
            [b1, b2, f1, f2, factor, eps_c, lr],
        );
    }
}

/// The element-wise Adam update (see [`FusedTrainer::adam_step`]); c = [β₁, β₂, 1−β₁, 1−β₂,
/// √(1−β₂ᵗ)/(1−β₁ᵗ), ε·√(1−β₂ᵗ), lr].
#[inline(always)]
fn adam_body(p: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32], c: [f32; 7]) {
    let [b1, b2, f1, f2, factor, eps_c, lr] = c;
    for (((p, m), v), &g) in p.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g) {
        *m = *m * b1 + g * f1;
        *v = *v * b2 + g * g * f2;
        *p -= (*m * factor) / (v.sqrt() + eps_c) * lr;
    }
}

multiversion!(adam_update(p: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32], c: [f32; 7]) {
    adam_body(p, m, v, g, c)
});

/// The sampling forward of a trained [`FlatNet`], without an autodiff graph or per-op
/// dispatch. Rows are split into blocks over the rayon threads (rows are independent, so the
/// result does not depend on the split).
pub struct FusedForward {
    net: FlatNet,
    pool: std::sync::Mutex<Vec<Work>>,
}

impl FusedForward {
    pub fn new(net: FlatNet) -> Self {
        Self {
            net,
            pool: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// The network's output width.
    pub fn out_dim(&self) -> usize {
        self.net.out_dim()
    }

    /// ε_θ(x, t) for `x` (n × d_in, row-major), one timestep shared by all rows.
    pub fn eps_host(&self, x: &[f32], t: usize) -> Vec<f32> {
        let din = self.net.dims[0];
        let dout = self.net.out_dim();
        let n = x.len() / din;
        let threads = rayon::current_num_threads().max(1);
        // Blocks of at least 256 rows: smaller ones cost more in hand-off than they save.
        let rows = n.div_ceil(threads).max(256).min(n.max(1));
        let nb = n.div_ceil(rows);
        let mut pool = std::mem::take(&mut *self.pool.lock().unwrap_or_else(|e| e.into_inner()));
        pool.resize_with(nb, Work::default);
        let mut out = vec![0f32; n * dout];
        let net = &self.net;
        let run = |((xb, ob), w): ((&[f32], &mut [f32]), &mut Work)| {
            let r = xb.len() / din;
            w.resize(net, r, 1);
            w.h[0].copy_from_slice(xb);
            sinusoid_rows(&[t], net.freq, &mut w.freqs);
            w.forward(net, r, 1);
            ob.copy_from_slice(&w.h[net.layers.len()][..r * dout]);
        };
        let jobs: Vec<_> = x
            .chunks(rows * din)
            .zip(out.chunks_mut(rows * dout))
            .zip(pool.iter_mut())
            .collect();
        if nb == 1 {
            jobs.into_iter().for_each(run);
        } else {
            jobs.into_par_iter().for_each(run);
        }
        *self.pool.lock().unwrap_or_else(|e| e.into_inner()) = pool;
        out
    }
}
