//! An in-memory labelled image data set and a prefetching, seeded batch iterator.
//!
//! Both the bundled digits and an image folder load into the same [`ImageSet`], so the
//! trainer sees one type. Images are decoded once up front (the sets are small: 9,000 AFHQ
//! images at 64×64 are 442 MB of f32); batches are gathered on a background thread so the
//! copy overlaps with the training step.
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use burn::prelude::*;
use rand::seq::SliceRandom;

use crate::{Error, Result};

/// Labelled images in [−1, 1], layout [N, C, H, W], labels 1 … K (0 is the null class; every
/// label of an unconditional set, which has no class names, is 0).
#[derive(Debug, Clone)]
pub struct ImageSet {
    /// Pixel values, N·C·H·W of them, image after image.
    pub images: Vec<f32>,
    /// One label per image, in 1 ..= class_names.len() (all 0 when there are no classes).
    pub labels: Vec<usize>,
    /// Class names; label `l` is `class_names[l − 1]`.
    pub class_names: Vec<String>,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl ImageSet {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    /// Number of real classes K.
    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }
    /// Values per image (C·H·W).
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }
    /// The pixels of image `i`, [C, H, W].
    pub fn image(&self, i: usize) -> &[f32] {
        let n = self.image_len();
        &self.images[i * n..(i + 1) * n]
    }

    /// Images `idx` gathered into one host batch; an index `i ≥ len` is image `i − len` flipped
    /// left–right (the second half of an x-flipped set, see [`ImageSet::batches`]).
    pub fn gather(&self, idx: &[usize]) -> HostBatch {
        let n = self.image_len();
        let w = self.width;
        let mut images = Vec::with_capacity(idx.len() * n);
        for &i in idx {
            if i < self.len() {
                images.extend_from_slice(self.image(i));
            } else {
                for row in self.image(i - self.len()).chunks_exact(w) {
                    images.extend(row.iter().rev());
                }
            }
        }
        HostBatch {
            images,
            labels: idx.iter().map(|&i| self.labels[i % self.len()]).collect(),
            shape: [idx.len(), self.channels, self.height, self.width],
        }
    }

    /// An endless stream of shuffled batches starting at step `start` (a fresh seeded
    /// permutation per epoch; incomplete last batches are dropped, as the reference's
    /// `drop_last=True`), produced `prefetch` batches ahead on a background thread. Batch `s`
    /// depends only on (`seed`, `s`), so a resumed run sees the batches it would have seen.
    ///
    /// With `xflip` the set is doubled by left–right mirrored copies before shuffling, as EDM's
    /// `--xflip` does (Karras et al. 2022, App. F.2): an epoch sees every image once as it is and
    /// once mirrored, in a seeded order.
    pub fn batches(
        self: &Arc<Self>,
        batch_size: usize,
        seed: u64,
        prefetch: usize,
        start: usize,
        xflip: bool,
    ) -> Result<BatchIter> {
        if batch_size == 0 {
            return Err(Error::invalid("batch_size", "must be at least 1"));
        }
        if batch_size > self.len() {
            return Err(Error::invalid(
                "batch_size",
                format!(
                    "{batch_size} is larger than the data set ({} images)",
                    self.len()
                ),
            ));
        }
        let set = Arc::clone(self);
        let (tx, rx) = sync_channel(prefetch.max(1));
        let handle = std::thread::Builder::new()
            .name("batch-prefetch".into())
            .spawn(move || {
                let len = if xflip { 2 * set.len() } else { set.len() };
                let per_epoch = len / batch_size;
                let mut order: Vec<usize> = (0..len).collect();
                let mut epoch = None;
                for step in start.. {
                    let (e, i) = (step / per_epoch, step % per_epoch);
                    if epoch != Some(e) {
                        order = (0..len).collect();
                        order.shuffle(&mut crate::rng::seeded(seed, 0xba7c_0000 + e as u64));
                        epoch = Some(e);
                    }
                    let chunk = &order[i * batch_size..(i + 1) * batch_size];
                    // The receiver was dropped: the trainer is done.
                    if tx.send(set.gather(chunk)).is_err() {
                        return;
                    }
                }
            })
            .map_err(|e| Error::io("batch-prefetch thread", e))?;
        Ok(BatchIter {
            rx: Some(rx),
            handle: Some(handle),
        })
    }
}

/// One batch on the host: images [B, C, H, W] in [−1, 1] and their labels.
#[derive(Debug, Clone)]
pub struct HostBatch {
    pub images: Vec<f32>,
    pub labels: Vec<usize>,
    pub shape: [usize; 4],
}

impl HostBatch {
    /// The images as a tensor on `device`.
    pub fn to_tensor(&self, device: &Device) -> Tensor<4> {
        Tensor::from_data(TensorData::new(self.images.clone(), self.shape), device)
    }
    /// Consumes the batch: (images tensor, labels).
    pub fn into_tensor(self, device: &Device) -> (Tensor<4>, Vec<usize>) {
        (
            Tensor::from_data(TensorData::new(self.images, self.shape), device),
            self.labels,
        )
    }
}

/// Endless iterator over prefetched batches; see [`ImageSet::batches`].
pub struct BatchIter {
    rx: Option<Receiver<HostBatch>>,
    handle: Option<JoinHandle<()>>,
}

impl Iterator for BatchIter {
    type Item = HostBatch;
    fn next(&mut self) -> Option<HostBatch> {
        self.rx.as_ref()?.recv().ok()
    }
}

impl Drop for BatchIter {
    fn drop(&mut self) {
        // Closing the channel makes the producer's next send fail, so it exits promptly.
        drop(self.rx.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
