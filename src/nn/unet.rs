//! The reference DDPM UNet (KAIST/Technion DDIM+CFG assignment layout), every size configurable.
//!
//! Topology (defaults reproduce the reference AFHQ network, 58,753,283 parameters plus a
//! 4×512 class table):
//! - time embedding: 256-dim sinusoid → Linear(256→4·ch) → SiLU → Linear(4·ch→4·ch), plus an
//!   optional `(num_classes + 1) × 4·ch` class table (row 0 = the null class) added to it;
//! - head Conv3×3, then per level `num_res_blocks` [`ResBlock`]s (attention at the listed
//!   levels) and a stride-2 Conv3×3 down-sampling between levels; every output goes on a skip
//!   stack;
//! - middle: ResBlock with attention, ResBlock without;
//! - up path: `num_res_blocks + 1` ResBlocks per level, each fed `cat(h, skip)`, nearest ×2 +
//!   Conv3×3 up-sampling between levels;
//! - tail GroupNorm → SiLU → Conv3×3.
//!
//! Field names follow the PyTorch state-dict keys of the reference (`head`, `downblocks.N`,
//! `attn.proj_q`, …); where PyTorch uses `nn.Sequential` indices (`block1.0`, `tail.2`,
//! `time_embedding.mlp.0`) we use named fields and [`load_pytorch`] remaps the keys.
use std::path::Path;

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, GroupNorm, GroupNormConfig, Initializer,
    Linear, LinearConfig, PaddingConfig2d,
};
use burn::prelude::*;
use burn::store::{ModuleSnapshot, ModuleStore, PytorchStore};
use burn::tensor::activation::{silu, softmax};
use burn::tensor::module::{attention, interpolate};
use burn::tensor::ops::{AttentionModuleOptions, InterpolateMode, InterpolateOptions};
use burn::tensor::{DType, FloatDType};
use rand::Rng;
use serde::{Deserialize, Serialize};

use diffuse_kernels::group_norm::{group_norm_act, group_norm_silu_dropout};
use diffuse_kernels::softmax;

use crate::checkpoint::report as checkpoint_report;
use crate::nn::embedding::timestep_embedding;
use crate::{Error, Result};

/// Every size of the UNet. `Default` is the reference AFHQ configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UNetConfig {
    /// Side of the (square) training images; must be divisible by 2^(levels − 1).
    pub image_size: usize,
    /// Image channels, both in and out (3 for RGB, 1 for the digits).
    pub in_channels: usize,
    /// Base channel count `ch`; level `i` has `ch · channel_mult[i]` channels.
    pub channels: usize,
    /// Channel multiplier per resolution level (its length is the number of levels).
    pub channel_mult: Vec<usize>,
    /// Residual blocks per level on the way down (the up path has one more).
    pub num_res_blocks: usize,
    /// Level indices whose residual blocks carry self-attention (1 = the 32×32 level at 64²).
    pub attn_levels: Vec<usize>,
    /// Dropout probability inside each residual block (training only).
    pub dropout: f64,
    /// Number of real classes K; the class table has K + 1 rows (row 0 = null class).
    /// 0 builds an unconditional network without a class table.
    pub num_classes: usize,
    /// GroupNorm groups (every channel count must be divisible by it).
    pub num_groups: usize,
    /// GroupNorm epsilon.
    pub norm_eps: f64,
    /// Width of the sinusoidal timestep features fed to the time MLP.
    pub time_freq_dim: usize,
}

impl Default for UNetConfig {
    fn default() -> Self {
        Self {
            image_size: 64,
            in_channels: 3,
            channels: 128,
            channel_mult: vec![1, 2, 2, 2],
            num_res_blocks: 4,
            attn_levels: vec![1],
            dropout: 0.1,
            num_classes: 3,
            num_groups: 32,
            norm_eps: 1e-5,
            time_freq_dim: 256,
        }
    }
}

/// One entry of the down/up block lists: which module sits at that PyTorch index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    Res {
        in_ch: usize,
        out_ch: usize,
        attn: bool,
    },
    Down(usize),
    Up(usize),
}

impl UNetConfig {
    /// A small CPU-friendly preset for the bundled digits at their native 8×8 (1 channel,
    /// 10 classes): ch 32, levels 8² and 4² (attention at 4²), 1 block per level.
    pub fn digits() -> Self {
        Self {
            image_size: 8,
            in_channels: 1,
            channels: 32,
            channel_mult: vec![1, 2],
            num_res_blocks: 1,
            attn_levels: vec![1],
            dropout: 0.1,
            num_classes: 10,
            ..Self::default()
        }
    }

    /// Width of the time (and class) embedding, 4 · ch as in the reference.
    pub fn temb_dim(&self) -> usize {
        4 * self.channels
    }

    /// Checks every constraint the network needs, so construction never panics.
    pub fn validate(&self) -> Result<()> {
        let bad = |name: &str, msg: String| Err(Error::invalid(format!("unet.{name}"), msg));
        if self.image_size == 0 || self.in_channels == 0 || self.channels == 0 {
            return bad(
                "image_size",
                "image_size, in_channels and channels must be positive".into(),
            );
        }
        if self.channel_mult.is_empty() || self.channel_mult.contains(&0) {
            return bad(
                "channel_mult",
                format!(
                    "needs at least one positive multiplier, got {:?}",
                    self.channel_mult
                ),
            );
        }
        if self.num_res_blocks == 0 {
            return bad("num_res_blocks", "must be at least 1".into());
        }
        if let Some(l) = self
            .attn_levels
            .iter()
            .find(|&&l| l >= self.channel_mult.len())
        {
            return bad(
                "attn_levels",
                format!(
                    "level {l} does not exist ({} levels)",
                    self.channel_mult.len()
                ),
            );
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(
                "dropout",
                format!("must be in [0, 1), got {}", self.dropout),
            );
        }
        if self.num_groups == 0 {
            return bad("num_groups", "must be positive".into());
        }
        for &m in &self.channel_mult {
            let c = self.channels * m;
            if !c.is_multiple_of(self.num_groups) {
                return bad(
                    "num_groups",
                    format!(
                        "{} channels are not divisible by {} groups",
                        c, self.num_groups
                    ),
                );
            }
        }
        if !self.channels.is_multiple_of(self.num_groups) {
            return bad(
                "num_groups",
                format!(
                    "{} channels are not divisible by {} groups",
                    self.channels, self.num_groups
                ),
            );
        }
        let down = 1usize << (self.channel_mult.len() - 1);
        if !self.image_size.is_multiple_of(down) {
            return bad(
                "image_size",
                format!(
                    "{} is not divisible by 2^(levels−1) = {down}",
                    self.image_size
                ),
            );
        }
        if self.time_freq_dim == 0 || !self.time_freq_dim.is_multiple_of(2) {
            return bad(
                "time_freq_dim",
                format!("must be even and positive, got {}", self.time_freq_dim),
            );
        }
        if self.norm_eps.is_nan() || self.norm_eps <= 0.0 {
            return bad(
                "norm_eps",
                format!("must be positive, got {}", self.norm_eps),
            );
        }
        Ok(())
    }

    /// The block sequence of the reference constructor, index for index.
    fn plans(&self) -> (Vec<Plan>, usize, Vec<Plan>, usize) {
        let ch = self.channels;
        let mut chs = vec![ch];
        let mut now = ch;
        let mut down = Vec::new();
        let levels = self.channel_mult.len();
        for (i, &m) in self.channel_mult.iter().enumerate() {
            let out = ch * m;
            for _ in 0..self.num_res_blocks {
                down.push(Plan::Res {
                    in_ch: now,
                    out_ch: out,
                    attn: self.attn_levels.contains(&i),
                });
                now = out;
                chs.push(now);
            }
            if i + 1 != levels {
                down.push(Plan::Down(now));
                chs.push(now);
            }
        }
        let mid = now;
        let mut up = Vec::new();
        for (i, &m) in self.channel_mult.iter().enumerate().rev() {
            let out = ch * m;
            for _ in 0..=self.num_res_blocks {
                let skip = chs.pop().expect("skip stack follows the down path");
                up.push(Plan::Res {
                    in_ch: skip + now,
                    out_ch: out,
                    attn: self.attn_levels.contains(&i),
                });
                now = out;
            }
            if i != 0 {
                up.push(Plan::Up(now));
            }
        }
        (down, mid, up, now)
    }

    /// Parameter count computed from the sizes alone (no allocation).
    pub fn num_params(&self) -> usize {
        let tdim = self.temb_dim();
        let conv = |i: usize, o: usize, k: usize| i * o * k * k + o;
        let gn = |c: usize| 2 * c;
        let lin = |i: usize, o: usize| i * o + o;
        let res = |p: &Plan| match *p {
            Plan::Res {
                in_ch,
                out_ch,
                attn,
            } => {
                gn(in_ch)
                    + conv(in_ch, out_ch, 3)
                    + lin(tdim, out_ch)
                    + gn(out_ch)
                    + conv(out_ch, out_ch, 3)
                    + if in_ch != out_ch {
                        conv(in_ch, out_ch, 1)
                    } else {
                        0
                    }
                    + if attn {
                        gn(out_ch) + 4 * conv(out_ch, out_ch, 1)
                    } else {
                        0
                    }
            }
            Plan::Down(c) | Plan::Up(c) => conv(c, c, 3),
        };
        let (down, mid, up, last) = self.plans();
        let mut n = lin(self.time_freq_dim, tdim) + lin(tdim, tdim);
        if self.num_classes > 0 {
            n += (self.num_classes + 1) * tdim;
        }
        n += conv(self.in_channels, self.channels, 3);
        n += down.iter().chain(up.iter()).map(res).sum::<usize>();
        n += 2 * res(&Plan::Res {
            in_ch: mid,
            out_ch: mid,
            attn: false,
        }) + gn(mid)
            + 4 * conv(mid, mid, 1);
        n += gn(last) + conv(last, self.in_channels, 3);
        n
    }

    /// A freshly initialised network (reference init, see [`UNet`]), drawn from `rng`.
    pub fn init(&self, device: &Device, rng: &mut impl Rng) -> Result<UNet> {
        self.validate()?;
        Ok(UNet::build(self, device, &mut Init::Random(rng)))
    }
}

/// How weights are filled at construction: the reference init from a seeded host RNG, or zeros
/// (cheap, for a network about to be overwritten by a checkpoint).
enum Init<'a, R: Rng> {
    Random(&'a mut R),
    Zeros,
}

impl<R: Rng> Init<'_, R> {
    /// `n` values uniform in (−a, a), or zeros.
    fn uniform(&mut self, n: usize, a: f64) -> Vec<f32> {
        match self {
            Init::Random(rng) => (0..n).map(|_| rng.gen_range(-a..a) as f32).collect(),
            Init::Zeros => vec![0.0; n],
        }
    }
    fn normal(&mut self, n: usize) -> Vec<f32> {
        match self {
            Init::Random(rng) => crate::rng::normal_vec(*rng, n),
            Init::Zeros => vec![0.0; n],
        }
    }
}

fn tensor<const D: usize>(v: Vec<f32>, shape: [usize; D], dev: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(v, shape), dev)
}

/// Conv2d with xavier_uniform(gain) weights and a zero bias (the reference's conv init).
fn conv<R: Rng>(
    init: &mut Init<R>,
    i: usize,
    o: usize,
    k: usize,
    stride: usize,
    gain: f64,
    dev: &Device,
) -> Conv2d {
    let pad = k / 2;
    let mut c = Conv2dConfig::new([i, o], [k, k])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .with_initializer(Initializer::Zeros)
        .init(dev);
    let (fan_in, fan_out) = (i * k * k, o * k * k);
    let a = gain * (6.0 / (fan_in + fan_out) as f64).sqrt();
    c.weight = Param::from_tensor(tensor(init.uniform(o * i * k * k, a), [o, i, k, k], dev));
    c
}

/// Linear layer. `xavier`: xavier_uniform weights and zero bias (inside residual blocks);
/// otherwise PyTorch's nn.Linear default, U(±1/√in) for weight and bias (time MLP).
fn linear<R: Rng>(init: &mut Init<R>, i: usize, o: usize, xavier: bool, dev: &Device) -> Linear {
    let mut l = LinearConfig::new(i, o)
        .with_initializer(Initializer::Zeros)
        .init(dev);
    let bound = 1.0 / (i as f64).sqrt();
    let a = if xavier {
        (6.0 / (i + o) as f64).sqrt()
    } else {
        bound
    };
    // burn stores Linear weights as [in, out]; the distribution is symmetric in the layout.
    l.weight = Param::from_tensor(tensor(init.uniform(i * o, a), [i, o], dev));
    if !xavier {
        l.bias = Some(Param::from_tensor(tensor(init.uniform(o, bound), [o], dev)));
    }
    l
}

fn group_norm(cfg: &UNetConfig, c: usize, dev: &Device) -> GroupNorm {
    GroupNormConfig::new(cfg.num_groups, c)
        .with_epsilon(cfg.norm_eps)
        .init(dev)
}

// Mixed precision (`Precision::Bf16`, `train::autocast`) follows PyTorch's autocast op lists:
// convolutions and matrix products run in the network's dtype (bf16), while GroupNorm and
// softmax are on the "autocast to float32" list, so their inputs are cast to f32, the op runs
// in f32 and its result is cast back for the next convolution or matrix product. In bf16 (8
// significant bits) a GroupNorm whose channels sit at mean μ ≫ σ loses the centring: the group
// mean itself is rounded to a step of 2^(⌊log₂μ⌋−7) (0.5 at μ ≈ 100), an error that lands on
// every x − μ of Wu & He 2018 eq. 1 and can be a large part of σ; the softmax backward
// dx = y ⊙ (dy − Σ dy·y) cancels in bf16 when dy has a large common part. In f32 the network's
// f32 path is untouched: the helpers below only act on non-f32 activations.

/// GroupNorm(x), then SiLU when `act`, under the autocast policy: a non-f32 `x` is cast to f32,
/// normalised in f32 with f32 γ, β (the fused CPU kernel where it applies) and cast back to
/// `x`'s dtype. An f32 `x` takes exactly the f32 path ([`group_norm_act`]).
pub fn norm_act(norm: &GroupNorm, x: Tensor<4>, act: bool) -> Tensor<4> {
    let dtype = x.dtype();
    if dtype == DType::F32 {
        return group_norm_act(norm, x, act);
    }
    group_norm_act(&f32_norm(norm), x.cast(FloatDType::F32), act).cast(dtype)
}

/// Dropout(SiLU(GroupNorm(x))) under the autocast policy of [`norm_act`].
pub fn norm_silu_dropout(norm: &GroupNorm, x: Tensor<4>, dropout: &Dropout) -> Tensor<4> {
    let dtype = x.dtype();
    if dtype == DType::F32 {
        return group_norm_silu_dropout(norm, x, dropout);
    }
    group_norm_silu_dropout(&f32_norm(norm), x.cast(FloatDType::F32), dropout).cast(dtype)
}

/// `norm` with f32 γ and β. `train::autocast` already leaves normalisation parameters in f32
/// (then this is a clone); a network cast wholesale to bf16 gets its γ, β cast back inside the
/// graph, so their gradients still reach the originals.
fn f32_norm(norm: &GroupNorm) -> GroupNorm {
    let mut n = norm.clone();
    let to_f32 = |p: Param<Tensor<1>>| p.map(|t| t.cast(FloatDType::F32));
    n.gamma = n.gamma.map(to_f32);
    n.beta = n.beta.map(to_f32);
    n
}

/// softmax(logits · scale) over the last axis under the autocast policy: the logits (the bf16
/// output of Q·Kᵀ, as in PyTorch) are cast to f32, scaled and normalised in f32 (the fused CPU
/// kernel under autodiff where it applies, burn's softmax otherwise), and the probabilities
/// are cast back to the logits' dtype for the product with V. Scaling after the cast avoids
/// a second bf16 rounding of the logits (an error of ~|logit|·2⁻⁹ each, i.e. a relative error
/// of that size in every probability).
pub fn attention_softmax(logits: Tensor<3>, scale: f64) -> Tensor<3> {
    let dtype = logits.dtype();
    let l = logits.cast(FloatDType::F32) * scale;
    let p = if l.device().is_autodiff() && softmax::fused_applies(&l) {
        softmax::softmax_last_fused(l)
    } else {
        softmax(l, 2)
    };
    p.cast(dtype)
}

/// Time MLP: Linear(freq→tdim) → SiLU → Linear(tdim→tdim) (PyTorch keys `mlp.0`, `mlp.2`).
#[derive(Module, Debug)]
pub struct TimeEmbedding {
    pub linear1: Linear,
    pub linear2: Linear,
}

impl TimeEmbedding {
    pub fn forward(&self, freq: Tensor<2>) -> Tensor<2> {
        self.linear2.forward(silu(self.linear1.forward(freq)))
    }
}

/// Single-head self-attention over the H·W positions with a residual connection.
#[derive(Module, Debug)]
pub struct AttnBlock {
    pub group_norm: GroupNorm,
    pub proj_q: Conv2d,
    pub proj_k: Conv2d,
    pub proj_v: Conv2d,
    pub proj: Conv2d,
}

impl AttnBlock {
    fn new<R: Rng>(cfg: &UNetConfig, init: &mut Init<R>, c: usize, dev: &Device) -> Self {
        // The reference's AttnBlock gives `proj` gain 1e-5, but the enclosing ResBlock then
        // re-initialises every conv it contains with gain 1 (only its own block2 conv gets 1e-5
        // afterwards). We reproduce what the reference actually trains from: gain 1 here.
        Self {
            group_norm: group_norm(cfg, c, dev),
            proj_q: conv(init, c, c, 1, 1, 1.0, dev),
            proj_k: conv(init, c, c, 1, 1, 1.0, dev),
            proj_v: conv(init, c, c, 1, 1, 1.0, dev),
            proj: conv(init, c, c, 1, 1, 1.0, dev),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let fused = x.device().is_autodiff() && softmax::fused_applies(&x);
        self.forward_with(x, fused)
    }

    /// [`Self::forward`] with the attention computed by burn's `attention` (`fused` false) or
    /// spelled out around the fused softmax (`fused` true, f32 on the CPU backend only). A
    /// non-f32 (mixed-precision) `x` ignores `fused`: its softmax runs in f32
    /// ([`attention_softmax`]) between the two bf16 matrix products.
    pub fn forward_with(&self, x: Tensor<4>, fused: bool) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let mixed = x.dtype() != DType::F32;
        let n = norm_act(&self.group_norm, x.clone(), false);
        let (q, k, v) = (
            self.proj_q.forward(n.clone()),
            self.proj_k.forward(n.clone()),
            self.proj_v.forward(n),
        );
        // Default scale is 1/√head_dim = 1/√C, the reference's softmax(qᵀk/√C).
        let scale = 1.0 / (c as f64).sqrt();
        let o = if mixed {
            let logits = q
                .reshape([b, c, h * w])
                .swap_dims(1, 2)
                .matmul(k.reshape([b, c, h * w]));
            let p = attention_softmax(logits, scale);
            p.matmul(v.reshape([b, c, h * w]).swap_dims(1, 2))
        } else if fused {
            // Training on the CPU: burn differentiates attention through its composed
            // fallback; spelled out here with the fused softmax, whose backward reads the
            // B·HW·HW probabilities once instead of making a dozen passes over them.
            let q = q.reshape([b, c, h * w]).swap_dims(1, 2) * scale;
            let p = softmax::softmax_last_fused(q.matmul(k.reshape([b, c, h * w])));
            p.matmul(v.reshape([b, c, h * w]).swap_dims(1, 2))
        } else {
            // [B, C, H, W] → [B, 1, HW, C] token layout for the backend's attention kernel.
            let tokens = |t: Tensor<4>| {
                t.reshape([b, c, h * w])
                    .swap_dims(1, 2)
                    .unsqueeze_dim::<4>(1)
            };
            let o = attention(
                tokens(q),
                tokens(k),
                tokens(v),
                None,
                None,
                AttentionModuleOptions::default(),
            );
            o.reshape([b, h * w, c])
        };
        let o = o.swap_dims(1, 2).reshape([b, c, h, w]);
        x + self.proj.forward(o)
    }
}

/// GN→SiLU→Conv3×3, + Linear(SiLU(temb)), GN→SiLU→Dropout→Conv3×3, + shortcut, then attention.
#[derive(Module, Debug)]
pub struct ResBlock {
    pub block1_norm: GroupNorm,
    pub block1_conv: Conv2d,
    pub temb_proj: Linear,
    pub block2_norm: GroupNorm,
    pub dropout: Dropout,
    pub block2_conv: Conv2d,
    /// 1×1 conv when the channel count changes, identity otherwise.
    pub shortcut: Option<Conv2d>,
    pub attn: Option<AttnBlock>,
}

impl ResBlock {
    fn new<R: Rng>(
        cfg: &UNetConfig,
        init: &mut Init<R>,
        i: usize,
        o: usize,
        attn: bool,
        dev: &Device,
    ) -> Self {
        Self {
            block1_norm: group_norm(cfg, i, dev),
            block1_conv: conv(init, i, o, 3, 1, 1.0, dev),
            temb_proj: linear(init, cfg.temb_dim(), o, true, dev),
            block2_norm: group_norm(cfg, o, dev),
            dropout: DropoutConfig::new(cfg.dropout).init(),
            // Near-zero init: each block starts as (almost) the identity, as in the reference.
            block2_conv: conv(init, o, o, 3, 1, 1e-5, dev),
            shortcut: (i != o).then(|| conv(init, i, o, 1, 1, 1.0, dev)),
            attn: attn.then(|| AttnBlock::new(cfg, init, o, dev)),
        }
    }

    /// `temb_act` is SiLU(temb), shape [B, tdim] or [1, tdim] (shared by the batch).
    pub fn forward(&self, x: Tensor<4>, temb_act: Tensor<2>) -> Tensor<4> {
        let h = self
            .block1_conv
            .forward(norm_act(&self.block1_norm, x.clone(), true));
        let [tb, c] = [temb_act.dims()[0], h.dims()[1]];
        let h = h + self.temb_proj.forward(temb_act).reshape([tb, c, 1, 1]);
        let h = self
            .block2_conv
            .forward(norm_silu_dropout(&self.block2_norm, h, &self.dropout));
        let h = match &self.shortcut {
            Some(s) => h + s.forward(x),
            None => h + x,
        };
        match &self.attn {
            Some(a) => a.forward(h),
            None => h,
        }
    }
}

/// Stride-2 Conv3×3.
#[derive(Module, Debug)]
pub struct DownSample {
    pub main: Conv2d,
}

/// Nearest ×2, then Conv3×3.
#[derive(Module, Debug)]
pub struct UpSample {
    pub main: Conv2d,
}

/// What sits at one index of `downblocks` / `upblocks` (a PyTorch `ModuleList` of mixed types).
/// A network holds a few dozen, built once: boxing the large variant would save nothing.
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Block {
    Res(ResBlock),
    Down(DownSample),
    Up(UpSample),
}

/// The noise-prediction UNet. Build with [`UNetConfig::init`] or [`load_pytorch`].
#[derive(Module, Debug)]
pub struct UNet {
    pub time_embedding: TimeEmbedding,
    /// (K + 1) × tdim table added to the time embedding; row 0 is the null class.
    pub class_embedding: Option<Embedding>,
    pub head: Conv2d,
    pub downblocks: Vec<Block>,
    pub middleblocks: Vec<ResBlock>,
    pub upblocks: Vec<Block>,
    pub tail_norm: GroupNorm,
    pub tail_conv: Conv2d,
    /// Width of the sinusoidal timestep features.
    pub time_freq_dim: usize,
}

impl UNet {
    fn build<R: Rng>(cfg: &UNetConfig, dev: &Device, init: &mut Init<R>) -> Self {
        let tdim = cfg.temb_dim();
        let time_embedding = TimeEmbedding {
            linear1: linear(init, cfg.time_freq_dim, tdim, false, dev),
            linear2: linear(init, tdim, tdim, false, dev),
        };
        let class_embedding = (cfg.num_classes > 0).then(|| {
            let mut e = EmbeddingConfig::new(cfg.num_classes + 1, tdim)
                .with_initializer(Initializer::Zeros)
                .init(dev);
            // nn.Embedding's default init, N(0, 1).
            e.weight = Param::from_tensor(tensor(
                init.normal((cfg.num_classes + 1) * tdim),
                [cfg.num_classes + 1, tdim],
                dev,
            ));
            e
        });
        let head = conv(init, cfg.in_channels, cfg.channels, 3, 1, 1.0, dev);
        let (down, mid, up, last) = cfg.plans();
        let block = |p: Plan, init: &mut Init<R>| match p {
            Plan::Res {
                in_ch,
                out_ch,
                attn,
            } => Block::Res(ResBlock::new(cfg, init, in_ch, out_ch, attn, dev)),
            Plan::Down(c) => Block::Down(DownSample {
                main: conv(init, c, c, 3, 2, 1.0, dev),
            }),
            Plan::Up(c) => Block::Up(UpSample {
                main: conv(init, c, c, 3, 1, 1.0, dev),
            }),
        };
        let downblocks = down.into_iter().map(|p| block(p, init)).collect();
        let middleblocks = vec![
            ResBlock::new(cfg, init, mid, mid, true, dev),
            ResBlock::new(cfg, init, mid, mid, false, dev),
        ];
        let upblocks = up.into_iter().map(|p| block(p, init)).collect();
        Self {
            time_embedding,
            class_embedding,
            head,
            downblocks,
            middleblocks,
            upblocks,
            tail_norm: group_norm(cfg, last, dev),
            tail_conv: conv(init, last, cfg.in_channels, 3, 1, 1e-5, dev),
            time_freq_dim: cfg.time_freq_dim,
        }
    }

    /// ε prediction for `x` [B, C, H, W] at float timesteps `t` ([B], or [1] shared by the
    /// batch) with optional class `labels` ([B], 0 = null class). Labels are ignored by an
    /// unconditional network; callers validate them with [`UNet::check_labels`] (an
    /// out-of-range label is a programming error here, as in any tensor index).
    /// Label dropout for CFG is not done here: see [`drop_labels`].
    pub fn forward(&self, x: Tensor<4>, t: Tensor<1>, labels: Option<Tensor<1, Int>>) -> Tensor<4> {
        // The sinusoid is formed in f32 from f32 timesteps (bf16 cannot tell t = 997 from
        // 996), then takes the network's dtype: a no-op in f32, the bf16 input of the time MLP
        // under mixed precision (`train::autocast`).
        let freq = timestep_embedding(t, self.time_freq_dim).cast(self.head.weight.val().dtype());
        let mut temb = self.time_embedding.forward(freq);
        if let (Some(labels), Some(table)) = (labels, &self.class_embedding) {
            temb = temb + table.weight.val().select(0, labels);
        }
        // Every ResBlock starts its temb projection with SiLU: compute it once.
        let temb = silu(temb);
        let mut h = self.head.forward(x);
        let mut skips = Vec::with_capacity(self.downblocks.len() + 1);
        skips.push(h.clone());
        for b in &self.downblocks {
            h = match b {
                Block::Res(r) => r.forward(h, temb.clone()),
                Block::Down(d) => d.main.forward(h),
                Block::Up(u) => u.main.forward(upsample2(h)),
            };
            skips.push(h.clone());
        }
        for r in &self.middleblocks {
            h = r.forward(h, temb.clone());
        }
        for b in &self.upblocks {
            h = match b {
                Block::Res(r) => {
                    let skip = skips.pop().expect("one skip per up-path residual block");
                    r.forward(Tensor::cat(vec![h, skip], 1), temb.clone())
                }
                Block::Down(d) => d.main.forward(h),
                Block::Up(u) => u.main.forward(upsample2(h)),
            };
        }
        self.tail_conv.forward(norm_act(&self.tail_norm, h, true))
    }

    /// Number of real classes K (0 for an unconditional network).
    pub fn num_classes(&self) -> usize {
        self.class_embedding
            .as_ref()
            .map_or(0, |e| e.weight.dims()[0] - 1)
    }

    /// Errors unless every label is a valid row of the class table (0 … K); an unconditional
    /// network takes only 0.
    pub fn check_labels(&self, labels: &[usize]) -> Result<()> {
        let k = self.num_classes();
        if k == 0 && labels.iter().any(|&l| l != 0) {
            return Err(Error::invalid(
                "labels",
                "this network is unconditional (no class table): every label must be 0",
            ));
        }
        match labels.iter().find(|&&l| l > k) {
            Some(l) => Err(Error::invalid(
                "labels",
                format!("label {l} out of range 0..={k}"),
            )),
            None => Ok(()),
        }
    }
}

fn upsample2(x: Tensor<4>) -> Tensor<4> {
    interpolate(
        x,
        InterpolateOptions::new(InterpolateMode::Nearest).with_scale_factor([2.0, 2.0]),
    )
}

/// Labels as an Int tensor on `device`.
pub fn labels_tensor(labels: &[usize], device: &Device) -> Tensor<1, Int> {
    let v: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
    Tensor::from_data(TensorData::new(v, [labels.len()]), device)
}

impl crate::sampling::Denoiser<4> for UNet {
    fn eps(&self, x: Tensor<4>, t: usize, labels: Option<&[usize]>) -> Tensor<4> {
        let device = x.device();
        let t = Tensor::from_data(TensorData::new(vec![t as f32], [1]), &device);
        let labels = labels.map(|l| labels_tensor(l, &device));
        self.forward(x, t, labels)
    }
}

/// Classifier-free-guidance label dropout: each label becomes 0 (the null class) when a
/// uniform draw in [0, 1) is below `p`. One draw per label whatever `p` is, so the random
/// stream does not depend on `p`; `p = 0` never drops. For the training loop (training mode
/// only), kept outside `forward` so sampling can never drop labels by accident.
pub fn drop_labels(labels: &[usize], p: f64, rng: &mut impl Rng) -> Vec<usize> {
    labels
        .iter()
        .map(|&l| if rng.gen::<f64>() < p { 0 } else { l })
        .collect()
}

/// PyTorch key → our module path (regex, replacement), applied in order on import.
const KEY_REMAP: &[(&str, &str)] = &[
    (r"^time_embedding\.mlp\.0\.", "time_embedding.linear1."),
    (r"^time_embedding\.mlp\.2\.", "time_embedding.linear2."),
    (r"\.block1\.0\.", ".block1_norm."),
    (r"\.block1\.2\.", ".block1_conv."),
    (r"\.temb_proj\.1\.", ".temb_proj."),
    (r"\.block2\.0\.", ".block2_norm."),
    (r"\.block2\.3\.", ".block2_conv."),
    (r"^tail\.0\.", "tail_norm."),
    (r"^tail\.2\.", "tail_conv."),
];

/// Our module path → the PyTorch key, for error messages (inverse of [`KEY_REMAP`]).
fn torch_key(path: &str) -> String {
    let mut k = path.to_string();
    for (ours, theirs) in [
        ("time_embedding.linear1.", "time_embedding.mlp.0."),
        ("time_embedding.linear2.", "time_embedding.mlp.2."),
        (".block1_norm.", ".block1.0."),
        (".block1_conv.", ".block1.2."),
        (".temb_proj.", ".temb_proj.1."),
        (".block2_norm.", ".block2.0."),
        (".block2_conv.", ".block2.3."),
    ] {
        k = k.replace(ours, theirs);
    }
    if let Some(rest) = k.strip_prefix("tail_norm.") {
        k = format!("tail.0.{rest}");
    } else if let Some(rest) = k.strip_prefix("tail_conv.") {
        k = format!("tail.2.{rest}");
    }
    if k.contains("norm")
        || k.starts_with("tail.0.")
        || k.contains(".block1.0.")
        || k.contains(".block2.0.")
    {
        k = k.replace(".gamma", ".weight").replace(".beta", ".bias");
    }
    k
}

/// Our module path → the course's PyTorch key (regex, replacement): the inverse of
/// [`KEY_REMAP`], applied on export after burn's PyTorch adapter (which transposes Linear
/// weights and names GroupNorm's γ/β `weight`/`bias`).
pub const TO_COURSE_KEYS: &[(&str, &str)] = &[
    (r"^time_embedding\.linear1\.", "time_embedding.mlp.0."),
    (r"^time_embedding\.linear2\.", "time_embedding.mlp.2."),
    (r"\.block1_norm\.", ".block1.0."),
    (r"\.block1_conv\.", ".block1.2."),
    (r"\.temb_proj\.", ".temb_proj.1."),
    (r"\.block2_norm\.", ".block2.0."),
    (r"\.block2_conv\.", ".block2.3."),
    (r"^tail_norm\.", "tail.0."),
    (r"^tail_conv\.", "tail.2."),
];

/// The course's `DiffusionModule` state dict holds the UNet under `network.` and the noise
/// schedule's buffers under `var_scheduler.`; a bare `UNet.state_dict()` has neither.
const COURSE_PREFIX: &str = r"^network\.";
const SCHEDULER_PREFIX: &str = "var_scheduler.";

/// The tensor names (course keys, `network.` stripped, the scheduler's buffers left out) and
/// shapes of a PyTorch file (`.pt/.pth/.ckpt/.bin`, weights at the top or under `state_dict`)
/// or of a safetensors file in the course's key layout.
pub fn course_file_tensors(path: &Path) -> Result<Vec<(String, Vec<usize>)>> {
    // Read in our names and named back, as `load_pytorch` reports them.
    let mut src = CourseSource::open(path, KEY_REMAP)?;
    src.tensors(path)
}

/// A course-layout weights file opened with the given key remapping.
enum CourseSource {
    Torch(PytorchStore),
    Safetensors(burn::store::SafetensorsStore),
}

impl CourseSource {
    fn open(path: &Path, remap: &[(&str, &str)]) -> Result<Self> {
        if let Err(e) = std::fs::metadata(path) {
            return Err(Error::io(path, e));
        }
        let safetensors = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"));
        if safetensors {
            let mut s = burn::store::SafetensorsStore::from_file(path)
                .with_from_adapter(burn::store::PyTorchToBurnAdapter)
                .skip_enum_variants(true)
                .allow_partial(true)
                .validate(false)
                .with_key_remapping(COURSE_PREFIX, "");
            for (from, to) in remap {
                s = s.with_key_remapping(*from, *to);
            }
            return Ok(CourseSource::Safetensors(s));
        }
        let store = |top: Option<&str>| {
            let mut s = PytorchStore::from_file(path)
                .map_indices_contiguous(false)
                .allow_partial(true)
                .validate(false)
                .with_key_remapping(COURSE_PREFIX, "");
            if let Some(k) = top {
                s = s.with_top_level_key(k);
            }
            for (from, to) in remap {
                s = s.with_key_remapping(*from, *to);
            }
            s
        };
        let mut s = store(None);
        let keys = s.keys().map_err(|e| unreadable(path, &e.to_string()))?;
        if !keys.iter().any(|k| k.starts_with("head."))
            && keys.iter().any(|k| k.starts_with("state_dict."))
        {
            s = store(Some("state_dict"));
        }
        Ok(CourseSource::Torch(s))
    }

    fn tensors(&mut self, path: &Path) -> Result<Vec<(String, Vec<usize>)>> {
        let all = match self {
            CourseSource::Torch(s) => s
                .get_all_tensors()
                .map_err(|e| unreadable(path, &e.to_string()))?,
            CourseSource::Safetensors(s) => s
                .get_all_tensors()
                .map_err(|e| unreadable(path, &e.to_string()))?,
        };
        Ok(all
            .values()
            .filter(|t| !t.name.starts_with(SCHEDULER_PREFIX))
            .map(|t| (torch_key(&t.name), t.shape.to_vec()))
            .collect())
    }

    fn load_into(&mut self, net: UNet, path: &Path) -> Result<(UNet, burn::store::ApplyResult)> {
        let mut net = net;
        let res = match self {
            CourseSource::Torch(s) => net.load_from(s).map_err(|e| e.to_string()),
            CourseSource::Safetensors(s) => net.load_from(s).map_err(|e| e.to_string()),
        }
        .map_err(|e| Error::Checkpoint {
            path: path.to_path_buf(),
            msg: checkpoint_report::tidy_store_error(&e),
        })?;
        Ok((net, res))
    }
}

fn unreadable(path: &Path, e: &str) -> Error {
    Error::Checkpoint {
        path: path.to_path_buf(),
        msg: format!(
            "cannot read as a PyTorch or safetensors file: {}",
            checkpoint_report::tidy_store_error(e)
        ),
    }
}

/// The UNet configuration that a course-layout state dict implies (course keys and shapes, as
/// [`course_file_tensors`] lists them): channels, levels and their multipliers, blocks per
/// level, attention levels, classes and the time-feature width come from the tensors;
/// `image_size` (which no weight depends on) and `dropout` are left at the course's 64 and 0.1.
/// GroupNorm uses the course's 32 groups. An error names the key that is missing or odd.
pub fn infer_course_config(tensors: &[(String, Vec<usize>)]) -> Result<UNetConfig> {
    let shape = |k: &str| tensors.iter().find(|(n, _)| n == k).map(|(_, s)| s.clone());
    let need = |k: &str| {
        shape(k).ok_or_else(|| {
            Error::invalid(
                "architecture",
                format!("the weights have no `{k}`, so the architecture cannot be read from them"),
            )
        })
    };
    let head = need("head.weight")?;
    let (ch, in_ch) = (head[0], head[1]);
    let freq = need("time_embedding.mlp.0.weight")?[1];
    let num_classes = shape("class_embedding.weight").map_or(0, |s| s[0].saturating_sub(1));
    // Walk the down path: ResBlocks (block1.2 is their first conv) until a DownSample (`main`).
    let mut mult = Vec::new();
    let mut attn = Vec::new();
    let mut per_level = Vec::new();
    let (mut level, mut blocks, mut width) = (0usize, 0usize, ch);
    for i in 0.. {
        let p = format!("downblocks.{i}.");
        if let Some(s) = shape(&format!("{p}block1.2.weight")) {
            width = s[0];
            blocks += 1;
            if shape(&format!("{p}attn.proj_q.weight")).is_some() && !attn.contains(&level) {
                attn.push(level);
            }
        } else if shape(&format!("{p}main.weight")).is_some() {
            mult.push(width / ch.max(1));
            per_level.push(blocks);
            (level, blocks) = (level + 1, 0);
        } else {
            break;
        }
    }
    mult.push(width / ch.max(1));
    per_level.push(blocks);
    let num_res_blocks = per_level[0];
    if num_res_blocks == 0 || per_level.iter().any(|&b| b != num_res_blocks) {
        return Err(Error::invalid(
            "architecture",
            format!("the down path has {per_level:?} ResBlocks per level; the course's UNet has the same number at every level"),
        ));
    }
    let cfg = UNetConfig {
        image_size: 64,
        in_channels: in_ch,
        channels: ch,
        channel_mult: mult,
        num_res_blocks,
        attn_levels: attn,
        dropout: 0.1,
        num_classes,
        num_groups: 32,
        norm_eps: 1e-5,
        time_freq_dim: freq,
    };
    cfg.validate()?;
    Ok(cfg)
}

/// Loads a PyTorch state dict of the reference layout (`torch.save(net.state_dict())`, a
/// checkpoint dict holding it under `state_dict`, the course's `{hparams, state_dict}` file
/// whose `DiffusionModule` state dict holds it under `network.`, or a safetensors file of
/// those keys) into a network of `config`. Pickled objects in the file are never executed.
/// Every missing, unexpected or mis-shaped tensor is named (by its PyTorch key) in the error.
pub fn load_pytorch(path: impl AsRef<Path>, config: &UNetConfig, device: &Device) -> Result<UNet> {
    let path = path.as_ref();
    config.validate()?;
    let ckpt = |msg: String| Error::Checkpoint {
        path: path.to_path_buf(),
        msg,
    };
    let mut s = CourseSource::open(path, KEY_REMAP)?;
    let net = UNet::build(config, device, &mut Init::<rand_chacha::ChaCha8Rng>::Zeros);
    let params = checkpoint_report::model_tensors(&net);
    let file = s.tensors(path)?;
    checkpoint_report::guard_sizes(
        &file,
        checkpoint_report::largest(&params),
        checkpoint_report::UNET,
    )
    .map_err(ckpt)?;
    let (net, res) = s.load_into(net, path)?;
    let mut misfit = checkpoint_report::Misfit::from_apply(&res, torch_key);
    misfit.unexpected = misfit
        .unexpected
        .iter()
        .filter(|p| !p.starts_with(SCHEDULER_PREFIX))
        .map(|p| torch_key(p))
        .collect();
    // Linear weights are compared in burn's [in, out] layout; report PyTorch's.
    for (name, found, expected) in misfit.misshaped.iter_mut() {
        if is_linear_weight(name) {
            found.reverse();
            expected.reverse();
        }
    }
    if !misfit.is_empty() {
        let names: Vec<String> = file.into_iter().map(|(n, _)| n).collect();
        return Err(ckpt(misfit.message(
            checkpoint_report::UNET,
            params.len(),
            &names,
        )));
    }
    Ok(net)
}

fn is_linear_weight(path: &str) -> bool {
    path.ends_with(".weight") && (path.contains("temb_proj") || path.contains("time_embedding."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torch_key_inverts_remap() {
        assert_eq!(
            torch_key("downblocks.0.block1_norm.gamma"),
            "downblocks.0.block1.0.weight"
        );
        assert_eq!(
            torch_key("upblocks.3.block2_conv.bias"),
            "upblocks.3.block2.3.bias"
        );
        assert_eq!(torch_key("tail_norm.beta"), "tail.0.bias");
        assert_eq!(
            torch_key("time_embedding.linear2.weight"),
            "time_embedding.mlp.2.weight"
        );
        assert_eq!(
            torch_key("middleblocks.0.attn.group_norm.gamma"),
            "middleblocks.0.attn.group_norm.weight"
        );
        assert_eq!(
            torch_key("middleblocks.0.temb_proj.weight"),
            "middleblocks.0.temb_proj.1.weight"
        );
    }
}
