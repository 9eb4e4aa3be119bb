//! Block smoothing of progressive images whose low-frequency coefficients are incomplete,
//! libjpeg-turbo's `decompress_smooth_data` (jdcoefct.c). It estimates the missing AC
//! coefficients 1..=9 (zig-zag order) of every block from the DC values of the 5×5 block
//! neighbourhood (a 5×5 extension of T.81 K.8), and when no AC data arrived at all also
//! re-estimates the DC. libjpeg-turbo enables it by default (`do_block_smoothing`), so Pillow
//! applies it to progressive files that end before their refinement scans.
use super::idct::idct_islow;
use super::markers::Frame;
use super::upsample::Plane;

/// Natural-order positions of zig-zag coefficients 1..=9 (AC01, AC10, AC20, AC11, AC02, AC03,
/// AC12, AC21, AC30 in libjpeg's row/column naming).
const POS: [usize; 10] = [0, 1, 8, 16, 9, 2, 3, 10, 17, 24];

/// libjpeg-turbo's `smoothing_ok`: every component has a DC value and non-zero quantisers for
/// coefficients 0..=9, and some component still lacks full precision in one of 1..=9.
pub fn wanted(frame: &Frame) -> bool {
    let mut useful = false;
    for c in &frame.comps {
        let Some(q) = c.qtable else { return false };
        if POS.iter().any(|&p| q[p] == 0) || c.coef_bits[0] < 0 {
            return false;
        }
        useful |= c.coef_bits[1..].iter().any(|&b| b != 0);
    }
    useful
}

/// 5×5 weights over the DC neighbourhood (rows: two above … two below; columns: two left …
/// two right), one kernel per estimated coefficient, as in `decompress_smooth_data`.
type Kernel = [[i64; 5]; 5];

/// Kernels used when some AC data exists ("K.8-like"), for AC01, AC10, AC20, AC11, AC02.
const AC_ONLY: [Kernel; 5] = [
    [[0; 5], [0; 5], [-7, 50, 0, -50, 7], [0; 5], [0; 5]],
    [
        [0, 0, -7, 0, 0],
        [0, 0, 50, 0, 0],
        [0; 5],
        [0, 0, -50, 0, 0],
        [0, 0, 7, 0, 0],
    ],
    [
        [0, 0, -1, 0, 0],
        [0, 0, 13, 0, 0],
        [0, 0, -24, 0, 0],
        [0, 0, 13, 0, 0],
        [0, 0, -1, 0, 0],
    ],
    [
        [0, -1, 0, 1, 0],
        [-1, 10, 0, -10, 1],
        [0; 5],
        [1, -10, 0, 10, -1],
        [0, 1, 0, -1, 0],
    ],
    [[0; 5], [0; 5], [-1, 13, -24, 13, -1], [0; 5], [0; 5]],
];

/// Gaussian-like kernels used when only DC data exists ("DC interpolation"), for AC01, AC10,
/// AC20, AC11, AC02, AC03, AC12, AC21, AC30.
const DC_ONLY: [Kernel; 9] = [
    [
        [-1, -1, 0, 1, 1],
        [-3, 13, 0, -13, 3],
        [-3, 38, 0, -38, 3],
        [-3, 13, 0, -13, 3],
        [-1, -1, 0, 1, 1],
    ],
    [
        [-1, -3, -3, -3, -1],
        [-1, 13, 38, 13, -1],
        [0; 5],
        [1, -13, -38, -13, 1],
        [1, 3, 3, 3, 1],
    ],
    [
        [0, 0, 1, 0, 0],
        [0, 2, 7, 2, 0],
        [0, -5, -14, -5, 0],
        [0, 2, 7, 2, 0],
        [0, 0, 1, 0, 0],
    ],
    [
        [-1, 0, 0, 0, 1],
        [0, 9, 0, -9, 0],
        [0; 5],
        [0, -9, 0, 9, 0],
        [1, 0, 0, 0, -1],
    ],
    [
        [0; 5],
        [0, 2, -5, 2, 0],
        [1, 7, -14, 7, 1],
        [0, 2, -5, 2, 0],
        [0; 5],
    ],
    [
        [0; 5],
        [0, 1, 0, -1, 0],
        [0, 2, 0, -2, 0],
        [0, 1, 0, -1, 0],
        [0; 5],
    ],
    [[0; 5], [0, 1, -3, 1, 0], [0; 5], [0, -1, 3, -1, 0], [0; 5]],
    [
        [0; 5],
        [0, 1, 0, -1, 0],
        [0, -3, 0, 3, 0],
        [0, 1, 0, -1, 0],
        [0; 5],
    ],
    [[0; 5], [0, 1, 2, 1, 0], [0; 5], [0, -1, -2, -1, 0], [0; 5]],
];

/// The DC re-estimate when only DC data exists.
const DC_KERNEL: Kernel = [
    [-2, -6, -8, -6, -2],
    [-6, 6, 42, 6, -6],
    [-8, 42, 152, 42, -8],
    [-6, 6, 42, 6, -6],
    [-2, -6, -8, -6, -2],
];

/// The estimate `num / (256·Q)` rounded to nearest (`(128·Q + |num|) / (256·Q)` with C's
/// truncating division, sign restored), limited below 2^Al when the coefficient's top bits
/// are known to be zero (Al > 0).
fn estimate(num: i64, q: i64, al: i32) -> i16 {
    let mut pred = ((q << 7) + num.abs()) / (q << 8);
    if al > 0 && pred >= (1 << al) {
        pred = (1 << al) - 1;
    }
    (if num < 0 { -pred } else { pred }) as i32 as i16
}

/// The component's samples, each block smoothed before its IDCT.
pub fn component_plane(frame: &Frame, ci: usize) -> Plane {
    let comp = &frame.comps[ci];
    let q = comp.qtable.unwrap_or([0; 64]);
    let bits = comp.coef_bits;
    let change_dc = bits[1..].iter().all(|&b| b == -1);
    let stride = comp.blocks_w * 8;
    let mut data = vec![0u8; stride * comp.blocks_h * 8];
    let dc_at = |row: usize, col: usize| comp.coefs[(row * comp.stride + col) * 64] as i64;
    let last_col = comp.blocks_w - 1;
    let total = frame.mcus_y;
    let v = comp.v;
    for imcu in 0..total {
        // Block rows output in this iMCU row; on the last one libjpeg-turbo also uses this
        // (smaller) count to number the rows when deciding which neighbours exist, so the
        // same arithmetic is kept here.
        let block_rows = if imcu + 1 < total {
            v
        } else {
            match comp.blocks_h % v {
                0 => v,
                r => r,
            }
        };
        let image_rows = block_rows * total;
        for br in 0..block_rows {
            let image_row = imcu * block_rows + br;
            let cur = imcu * v + br;
            let prev = if image_row > 0 { cur - 1 } else { cur };
            let prev2 = if image_row > 1 { cur - 2 } else { prev };
            let next = if image_row + 1 < image_rows {
                cur + 1
            } else {
                cur
            };
            let next2 = if image_row + 2 < image_rows {
                cur + 2
            } else {
                next
            };
            let rows = [prev2, prev, cur, next, next2];
            for bx in 0..comp.blocks_w {
                // Columns two left … two right of this block, clamped to the real blocks.
                let cols = [-2i64, -1, 0, 1, 2]
                    .map(|d| (bx as i64 + d).clamp(0, last_col as i64) as usize);
                let mut dc = [[0i64; 5]; 5];
                for (r, &row) in rows.iter().enumerate() {
                    for (c, &col) in cols.iter().enumerate() {
                        dc[r][c] = dc_at(row, col);
                    }
                }
                let apply = |k: &Kernel| -> i64 {
                    let mut s = 0i64;
                    for r in 0..5 {
                        for c in 0..5 {
                            s += k[r][c] * dc[r][c];
                        }
                    }
                    s * q[0] as i64
                };
                let mut ws = [0i16; 64];
                ws.copy_from_slice(comp.block(bx, cur));
                let n_ac = if change_dc { 9 } else { 5 };
                for i in 1..=n_ac {
                    let p = POS[i];
                    if bits[i] != 0 && ws[p] == 0 {
                        let k = if change_dc {
                            &DC_ONLY[i - 1]
                        } else {
                            &AC_ONLY[i - 1]
                        };
                        ws[p] = estimate(apply(k), q[p] as i64, bits[i]);
                    }
                }
                if change_dc {
                    ws[0] = estimate(apply(&DC_KERNEL), q[0] as i64, 0);
                }
                let out = &mut data[cur * 8 * stride + bx * 8..];
                idct_islow(&ws, &q, out, stride);
            }
        }
    }
    Plane { data, stride }
}
