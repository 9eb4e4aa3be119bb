//! Transposing copies (a permuted view made contiguous), which burn-flex runs through 8×8
//! register transposes for 4-byte elements (patch in src/transpose32.rs),
//! against an index-by-index reference: every element moved bit for bit, including NaN
//! payloads, ±0 and infinities, at sizes with partial blocks on both edges and above the
//! parallel-copy threshold.
use burn::prelude::*;

/// [b, r, c] → [b, c, r] by index arithmetic.
fn reference(x: &[u32], b: usize, r: usize, c: usize) -> Vec<u32> {
    let mut y = vec![0u32; x.len()];
    for bi in 0..b {
        for ri in 0..r {
            for ci in 0..c {
                y[(bi * c + ci) * r + ri] = x[(bi * r + ri) * c + ci];
            }
        }
    }
    y
}

/// Distinct bit patterns, with special values sprinkled in.
fn patterns(n: usize) -> Vec<u32> {
    (0..n)
        .map(|i| match i % 97 {
            3 => 0x7fc0_1234, // quiet NaN with a payload
            5 => 0xffa0_0001, // negative signalling-pattern NaN
            7 => 0x8000_0000, // -0
            11 => f32::INFINITY.to_bits(),
            13 => f32::NEG_INFINITY.to_bits(),
            _ => (i as f32 * 0.37 - 11.0).to_bits(),
        })
        .collect()
}

fn check(b: usize, r: usize, c: usize) {
    let bits = patterns(b * r * c);
    let data: Vec<f32> = bits.iter().map(|&u| f32::from_bits(u)).collect();
    let dev = Device::flex();
    let x = Tensor::<3>::from_data(TensorData::new(data, [b, r, c]), &dev);
    let y = x.swap_dims(1, 2).into_data();
    assert_eq!(y.shape().to_vec(), vec![b, c, r]);
    let got: Vec<u32> = y
        .try_to_vec::<f32>()
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect();
    let want = reference(&bits, b, r, c);
    if let Some(i) = (0..want.len()).find(|&i| got[i] != want[i]) {
        panic!(
            "[{b}, {r}, {c}] transposed: element {i} is {:#010x}, want {:#010x}",
            got[i], want[i]
        );
    }
}

#[test]
fn transposing_copies_move_every_bit() {
    // Exact 8×8 blocks; partial blocks on rows, columns and both; fewer than 8 rows or
    // columns (the element-wise path); a batch.
    for (b, r, c) in [
        (1, 16, 8),
        (1, 19, 13),
        (2, 8, 27),
        (3, 31, 9),
        (1, 5, 40),
        (1, 40, 7),
        (4, 64, 96),
    ] {
        check(b, r, c);
    }
}

#[test]
fn large_transposing_copies_split_across_threads_move_every_bit() {
    // Above the 2^20-element threshold at which the copy runs in parallel row blocks, with
    // sizes that leave a partial block in the last one.
    check(1, 1029, 1027);
    check(2, 129, 4100);
}
