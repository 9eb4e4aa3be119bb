//! Inception-v3 feature network for FID, in torchvision's layout.
//!
//! The module tree mirrors the StarGAN-v2 wrapper used by the reference FID script, so a PyTorch
//! state dict of that wrapper loads by name: `block1` = Conv2d_1a_3x3, Conv2d_2a_3x3,
//! Conv2d_2b_3x3 (+ max-pool 3/2); `block2` = Conv2d_3b_1x1, Conv2d_4a_3x3 (+ max-pool 3/2);
//! `block3` = Mixed_5b … Mixed_6e; `block4` = Mixed_7a … Mixed_7c (+ global average pool → 2048
//! features); `final_fc` = Linear(2048, K). Keys read e.g. `block1.0.conv.weight`,
//! `block1.0.bn.running_mean`, `block3.0.branch1x1.conv.weight`, `final_fc.weight`.
//!
//! [`InceptionKind::PytorchFid`] builds pytorch-fid's variant of the same network (the TF
//! Inception graph ported to PyTorch): `FIDInceptionA/C/E_1` average-pool their pool branch
//! without counting padded zeros, `FIDInceptionE_2` (Mixed_7c) max-pools it, and `fc` has 1008
//! classes. Loading and key translation live in [`crate::nn::inception_load`].
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AvgPool2dConfig, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;

/// Number of pooled features (the input of `final_fc`).
pub const FEATURE_DIM: usize = 2048;

/// Which Inception-v3 variant to build. The weights are the same shapes; only the pool
/// branches of the Mixed blocks differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InceptionKind {
    /// torchvision's blocks (the reference FID network: StarGAN-v2 / KAIST `measure_fid.py`).
    #[default]
    Torchvision,
    /// pytorch-fid's patched blocks (TF-compatible pooling), for its published weights.
    PytorchFid,
}

/// Pooling used on a Mixed block's `branch_pool` before its 1×1 conv.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolBranch {
    /// 3×3, stride 1, pad 1 average pool counting padded zeros (torchvision).
    AvgIncludePad,
    /// 3×3, stride 1, pad 1 average pool over valid pixels only (TF / pytorch-fid).
    AvgExcludePad,
    /// 3×3, stride 1, pad 1 max pool (pytorch-fid's Mixed_7c).
    Max,
}

impl PoolBranch {
    fn forward(self, x: Tensor<4>) -> Tensor<4> {
        let pad = PaddingConfig2d::Explicit(1, 1, 1, 1);
        match self {
            PoolBranch::AvgIncludePad | PoolBranch::AvgExcludePad => AvgPool2dConfig::new([3, 3])
                .with_strides([1, 1])
                .with_padding(pad)
                .with_count_include_pad(self == PoolBranch::AvgIncludePad)
                .init()
                .forward(x),
            PoolBranch::Max => MaxPool2dConfig::new([3, 3])
                .with_strides([1, 1])
                .with_padding(pad)
                .init()
                .forward(x),
        }
    }
}

/// 3×3 stride-2 max pool without padding (between blocks and in the reduction blocks).
fn max_pool_3s2(x: Tensor<4>) -> Tensor<4> {
    MaxPool2dConfig::new([3, 3])
        .with_strides([2, 2])
        .init()
        .forward(x)
}

/// torchvision's `BasicConv2d`: Conv2d without bias → BatchNorm(eps = 0.001) → ReLU.
/// BatchNorm uses its running statistics unless the device is autodiff (training).
#[derive(Module, Debug)]
pub struct BasicConv2d {
    pub conv: Conv2d,
    pub bn: BatchNorm,
}

impl BasicConv2d {
    /// `kernel` and `padding` are (height, width), as in PyTorch.
    pub fn new(
        c_in: usize,
        c_out: usize,
        kernel: [usize; 2],
        stride: usize,
        padding: [usize; 2],
        dev: &Device,
    ) -> Self {
        let conv = Conv2dConfig::new([c_in, c_out], kernel)
            .with_stride([stride, stride])
            .with_padding(PaddingConfig2d::Explicit(
                padding[0], padding[1], padding[0], padding[1],
            ))
            .with_bias(false)
            .init(dev);
        let bn = BatchNormConfig::new(c_out).with_epsilon(1e-3).init(dev);
        Self { conv, bn }
    }

    fn k1(c_in: usize, c_out: usize, dev: &Device) -> Self {
        Self::new(c_in, c_out, [1, 1], 1, [0, 0], dev)
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match self.folded(&x) {
            Some((weight, bias, options)) => relu(conv2d(x, weight, Some(bias), options)),
            None => relu(self.bn.forward(self.conv.forward(x))),
        }
    }

    /// At inference (input not on an autodiff device), the convolution with BatchNorm folded
    /// in. BatchNorm with running statistics is the per-channel affine map
    /// y = γ·(z − μ)/√(σ² + ε) + β (Ioffe & Szegedy 2015, Alg. 2), so it folds into the
    /// convolution as w' = w·s, b' = β − μ·s with s = γ/√(σ² + ε). That saves the
    /// normalisation's passes over every activation; the result differs from normalising after
    /// the convolution only by f32 rounding. `None` in training, where BatchNorm uses batch
    /// statistics, and for `Same` padding (never built here).
    fn folded(&self, x: &Tensor<4>) -> Option<(Tensor<4>, Tensor<1>, ConvOptions<2>)> {
        let conv = &self.conv;
        let padding = match conv.padding {
            PaddingConfig2d::Explicit(top, left, bottom, right) => [(top, bottom), (left, right)],
            PaddingConfig2d::Valid => [(0, 0), (0, 0)],
            PaddingConfig2d::Same => return None,
        };
        if x.device().is_autodiff() {
            return None;
        }
        let bn = &self.bn;
        let scale = bn.gamma.val() / (bn.running_var.value() + bn.epsilon).sqrt();
        let bias = bn.beta.val() - bn.running_mean.value() * scale.clone();
        let [c_out] = scale.dims();
        let weight = conv.weight.val() * scale.reshape([c_out, 1, 1, 1]);
        let options =
            ConvOptions::new_with_padding(conv.stride, padding, conv.dilation, conv.groups);
        Some((weight, bias, options))
    }
}

/// Mixed_5b/5c/5d (35×35 grid at 299 px).
#[derive(Module, Debug)]
pub struct InceptionA {
    pub branch1x1: BasicConv2d,
    pub branch5x5_1: BasicConv2d,
    pub branch5x5_2: BasicConv2d,
    pub branch3x3dbl_1: BasicConv2d,
    pub branch3x3dbl_2: BasicConv2d,
    pub branch3x3dbl_3: BasicConv2d,
    pub branch_pool: BasicConv2d,
    #[module(skip)]
    pub pool: PoolBranch,
}

impl InceptionA {
    pub fn new(c_in: usize, pool_features: usize, pool: PoolBranch, dev: &Device) -> Self {
        Self {
            branch1x1: BasicConv2d::k1(c_in, 64, dev),
            branch5x5_1: BasicConv2d::k1(c_in, 48, dev),
            branch5x5_2: BasicConv2d::new(48, 64, [5, 5], 1, [2, 2], dev),
            branch3x3dbl_1: BasicConv2d::k1(c_in, 64, dev),
            branch3x3dbl_2: BasicConv2d::new(64, 96, [3, 3], 1, [1, 1], dev),
            branch3x3dbl_3: BasicConv2d::new(96, 96, [3, 3], 1, [1, 1], dev),
            branch_pool: BasicConv2d::k1(c_in, pool_features, dev),
            pool,
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let b1 = self.branch1x1.forward(x.clone());
        let b5 = self
            .branch5x5_2
            .forward(self.branch5x5_1.forward(x.clone()));
        let b3 = self.branch3x3dbl_1.forward(x.clone());
        let b3 = self.branch3x3dbl_3.forward(self.branch3x3dbl_2.forward(b3));
        let bp = self.branch_pool.forward(self.pool.forward(x));
        Tensor::cat(vec![b1, b5, b3, bp], 1)
    }
}

/// Mixed_6a: grid reduction 35 → 17.
#[derive(Module, Debug)]
pub struct InceptionB {
    pub branch3x3: BasicConv2d,
    pub branch3x3dbl_1: BasicConv2d,
    pub branch3x3dbl_2: BasicConv2d,
    pub branch3x3dbl_3: BasicConv2d,
}

impl InceptionB {
    pub fn new(c_in: usize, dev: &Device) -> Self {
        Self {
            branch3x3: BasicConv2d::new(c_in, 384, [3, 3], 2, [0, 0], dev),
            branch3x3dbl_1: BasicConv2d::k1(c_in, 64, dev),
            branch3x3dbl_2: BasicConv2d::new(64, 96, [3, 3], 1, [1, 1], dev),
            branch3x3dbl_3: BasicConv2d::new(96, 96, [3, 3], 2, [0, 0], dev),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let b3 = self.branch3x3.forward(x.clone());
        let d = self.branch3x3dbl_1.forward(x.clone());
        let d = self.branch3x3dbl_3.forward(self.branch3x3dbl_2.forward(d));
        Tensor::cat(vec![b3, d, max_pool_3s2(x)], 1)
    }
}

/// Mixed_6b … 6e (17×17 grid), factorised 7×7 convolutions.
#[derive(Module, Debug)]
pub struct InceptionC {
    pub branch1x1: BasicConv2d,
    pub branch7x7_1: BasicConv2d,
    pub branch7x7_2: BasicConv2d,
    pub branch7x7_3: BasicConv2d,
    pub branch7x7dbl_1: BasicConv2d,
    pub branch7x7dbl_2: BasicConv2d,
    pub branch7x7dbl_3: BasicConv2d,
    pub branch7x7dbl_4: BasicConv2d,
    pub branch7x7dbl_5: BasicConv2d,
    pub branch_pool: BasicConv2d,
    #[module(skip)]
    pub pool: PoolBranch,
}

impl InceptionC {
    pub fn new(c_in: usize, c7: usize, pool: PoolBranch, dev: &Device) -> Self {
        let row = |i, o| BasicConv2d::new(i, o, [1, 7], 1, [0, 3], dev);
        let col = |i, o| BasicConv2d::new(i, o, [7, 1], 1, [3, 0], dev);
        Self {
            branch1x1: BasicConv2d::k1(c_in, 192, dev),
            branch7x7_1: BasicConv2d::k1(c_in, c7, dev),
            branch7x7_2: row(c7, c7),
            branch7x7_3: col(c7, 192),
            branch7x7dbl_1: BasicConv2d::k1(c_in, c7, dev),
            branch7x7dbl_2: col(c7, c7),
            branch7x7dbl_3: row(c7, c7),
            branch7x7dbl_4: col(c7, c7),
            branch7x7dbl_5: row(c7, 192),
            branch_pool: BasicConv2d::k1(c_in, 192, dev),
            pool,
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let b1 = self.branch1x1.forward(x.clone());
        let b7 = self.branch7x7_1.forward(x.clone());
        let b7 = self.branch7x7_3.forward(self.branch7x7_2.forward(b7));
        let mut d = self.branch7x7dbl_1.forward(x.clone());
        for m in [
            &self.branch7x7dbl_2,
            &self.branch7x7dbl_3,
            &self.branch7x7dbl_4,
            &self.branch7x7dbl_5,
        ] {
            d = m.forward(d);
        }
        let bp = self.branch_pool.forward(self.pool.forward(x));
        Tensor::cat(vec![b1, b7, d, bp], 1)
    }
}

/// Mixed_7a: grid reduction 17 → 8.
#[derive(Module, Debug)]
pub struct InceptionD {
    pub branch3x3_1: BasicConv2d,
    pub branch3x3_2: BasicConv2d,
    pub branch7x7x3_1: BasicConv2d,
    pub branch7x7x3_2: BasicConv2d,
    pub branch7x7x3_3: BasicConv2d,
    pub branch7x7x3_4: BasicConv2d,
}

impl InceptionD {
    pub fn new(c_in: usize, dev: &Device) -> Self {
        Self {
            branch3x3_1: BasicConv2d::k1(c_in, 192, dev),
            branch3x3_2: BasicConv2d::new(192, 320, [3, 3], 2, [0, 0], dev),
            branch7x7x3_1: BasicConv2d::k1(c_in, 192, dev),
            branch7x7x3_2: BasicConv2d::new(192, 192, [1, 7], 1, [0, 3], dev),
            branch7x7x3_3: BasicConv2d::new(192, 192, [7, 1], 1, [3, 0], dev),
            branch7x7x3_4: BasicConv2d::new(192, 192, [3, 3], 2, [0, 0], dev),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let b3 = self
            .branch3x3_2
            .forward(self.branch3x3_1.forward(x.clone()));
        let b7 = self.branch7x7x3_1.forward(x.clone());
        let b7 = self.branch7x7x3_2.forward(b7);
        let b7 = self.branch7x7x3_4.forward(self.branch7x7x3_3.forward(b7));
        Tensor::cat(vec![b3, b7, max_pool_3s2(x)], 1)
    }
}

/// Mixed_7b/7c (8×8 grid), with the split 1×3 / 3×1 branches.
#[derive(Module, Debug)]
pub struct InceptionE {
    pub branch1x1: BasicConv2d,
    pub branch3x3_1: BasicConv2d,
    pub branch3x3_2a: BasicConv2d,
    pub branch3x3_2b: BasicConv2d,
    pub branch3x3dbl_1: BasicConv2d,
    pub branch3x3dbl_2: BasicConv2d,
    pub branch3x3dbl_3a: BasicConv2d,
    pub branch3x3dbl_3b: BasicConv2d,
    pub branch_pool: BasicConv2d,
    #[module(skip)]
    pub pool: PoolBranch,
}

impl InceptionE {
    pub fn new(c_in: usize, pool: PoolBranch, dev: &Device) -> Self {
        Self {
            branch1x1: BasicConv2d::k1(c_in, 320, dev),
            branch3x3_1: BasicConv2d::k1(c_in, 384, dev),
            branch3x3_2a: BasicConv2d::new(384, 384, [1, 3], 1, [0, 1], dev),
            branch3x3_2b: BasicConv2d::new(384, 384, [3, 1], 1, [1, 0], dev),
            branch3x3dbl_1: BasicConv2d::k1(c_in, 448, dev),
            branch3x3dbl_2: BasicConv2d::new(448, 384, [3, 3], 1, [1, 1], dev),
            branch3x3dbl_3a: BasicConv2d::new(384, 384, [1, 3], 1, [0, 1], dev),
            branch3x3dbl_3b: BasicConv2d::new(384, 384, [3, 1], 1, [1, 0], dev),
            branch_pool: BasicConv2d::k1(c_in, 192, dev),
            pool,
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let b1 = self.branch1x1.forward(x.clone());
        let b3 = self.branch3x3_1.forward(x.clone());
        let b3 = Tensor::cat(
            vec![
                self.branch3x3_2a.forward(b3.clone()),
                self.branch3x3_2b.forward(b3),
            ],
            1,
        );
        let d = self
            .branch3x3dbl_2
            .forward(self.branch3x3dbl_1.forward(x.clone()));
        let d = Tensor::cat(
            vec![
                self.branch3x3dbl_3a.forward(d.clone()),
                self.branch3x3dbl_3b.forward(d),
            ],
            1,
        );
        let bp = self.branch_pool.forward(self.pool.forward(x));
        Tensor::cat(vec![b1, b3, d, bp], 1)
    }
}

/// One Mixed block. An enum so that `block3`/`block4` can be `Vec`s indexed like PyTorch's
/// `nn.Sequential` (`block3.0.branch1x1…`); the variant name is not part of the tensor path
/// (the stores are used with `skip_enum_variants`). The variants differ in size, but a network
/// holds a dozen of them, built once: boxing them would save nothing.
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Mixed {
    A(InceptionA),
    B(InceptionB),
    C(InceptionC),
    D(InceptionD),
    E(InceptionE),
}

impl Mixed {
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Mixed::A(m) => m.forward(x),
            Mixed::B(m) => m.forward(x),
            Mixed::C(m) => m.forward(x),
            Mixed::D(m) => m.forward(x),
            Mixed::E(m) => m.forward(x),
        }
    }
}

/// Inception-v3 as four blocks plus a classifier head (see the module docs for the layout).
#[derive(Module, Debug)]
pub struct InceptionV3 {
    pub block1: Vec<BasicConv2d>,
    pub block2: Vec<BasicConv2d>,
    pub block3: Vec<Mixed>,
    pub block4: Vec<Mixed>,
    pub final_fc: Linear,
}

impl InceptionV3 {
    /// A freshly initialised network with a `num_classes`-way head.
    pub fn new(kind: InceptionKind, num_classes: usize, dev: &Device) -> Self {
        let (avg, last) = match kind {
            InceptionKind::Torchvision => (PoolBranch::AvgIncludePad, PoolBranch::AvgIncludePad),
            InceptionKind::PytorchFid => (PoolBranch::AvgExcludePad, PoolBranch::Max),
        };
        let c = |i, c7| Mixed::C(InceptionC::new(i, c7, avg, dev));
        Self {
            block1: vec![
                BasicConv2d::new(3, 32, [3, 3], 2, [0, 0], dev),
                BasicConv2d::new(32, 32, [3, 3], 1, [0, 0], dev),
                BasicConv2d::new(32, 64, [3, 3], 1, [1, 1], dev),
            ],
            block2: vec![
                BasicConv2d::k1(64, 80, dev),
                BasicConv2d::new(80, 192, [3, 3], 1, [0, 0], dev),
            ],
            block3: vec![
                Mixed::A(InceptionA::new(192, 32, avg, dev)),
                Mixed::A(InceptionA::new(256, 64, avg, dev)),
                Mixed::A(InceptionA::new(288, 64, avg, dev)),
                Mixed::B(InceptionB::new(288, dev)),
                c(768, 128),
                c(768, 160),
                c(768, 160),
                c(768, 192),
            ],
            block4: vec![
                Mixed::D(InceptionD::new(768, dev)),
                Mixed::E(InceptionE::new(1280, avg, dev)),
                Mixed::E(InceptionE::new(2048, last, dev)),
            ],
            final_fc: LinearConfig::new(FEATURE_DIM, num_classes).init(dev),
        }
    }

    /// Number of classes of the `final_fc` head.
    pub fn num_classes(&self) -> usize {
        self.final_fc.weight.dims()[1]
    }

    /// The 2048-d globally average-pooled features of a `[B, 3, H, W]` batch in [−1, 1]
    /// (H, W ≥ 75). This is what FID uses.
    pub fn features(&self, x: Tensor<4>) -> Tensor<2> {
        let mut x = x;
        for m in &self.block1 {
            x = m.forward(x);
        }
        x = max_pool_3s2(x);
        for m in &self.block2 {
            x = m.forward(x);
        }
        x = max_pool_3s2(x);
        for m in self.block3.iter().chain(&self.block4) {
            x = m.forward(x);
        }
        let [b, c, h, w] = x.dims();
        // Global average pool (AdaptiveAvgPool2d(1)).
        x.reshape([b, c, h * w]).mean_dim(2).reshape([b, c])
    }

    /// Class logits `final_fc(features(x))` (used to train the classifier).
    pub fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        self.final_fc.forward(self.features(x))
    }
}
