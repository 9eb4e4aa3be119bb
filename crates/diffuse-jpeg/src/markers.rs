//! Marker segments (ITU T.81 B.2–B.2.4.4) and the two application markers that decide the
//! colour space (JFIF APP0, Adobe APP14), read the way libjpeg-turbo's `jdmarker.c` does.
use super::huffman::HuffTable;
use super::JpegError;

/// Natural (row-major) index of the k-th coefficient in zig-zag order (T.81 Figure A.6).
pub const ZIGZAG: [usize; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20,
    13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59,
    52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
];

/// One frame component (T.81 B.2.2) with its decoded coefficients.
pub struct Component {
    pub id: u8,
    /// Sampling factors H_i, V_i (1..=4).
    pub h: usize,
    pub v: usize,
    /// Quantisation table selector Tq.
    pub tq: usize,
    /// Samples per line / lines of this component: ⌈X·H_i/H_max⌉ × ⌈Y·V_i/V_max⌉ (A.1.1),
    /// libjpeg's `downsampled_width` / `downsampled_height`.
    pub width: usize,
    pub height: usize,
    /// Blocks holding real samples: ⌈width/8⌉ × ⌈height/8⌉ (what a non-interleaved scan codes).
    pub blocks_w: usize,
    pub blocks_h: usize,
    /// Blocks per stored row: interleaved scans also code the MCU padding blocks.
    pub stride: usize,
    /// Coefficients in natural order, 64 per block, `stride` blocks per row.
    pub coefs: Vec<i16>,
    /// The table latched when the component's first scan starts: libjpeg-turbo's
    /// `latch_quant_tables`, so a DQT redefined later does not change earlier data.
    pub qtable: Option<[u16; 64]>,
    /// For progressive files, the Al of the last scan that coded each of coefficients 0..10,
    /// −1 when none did (libjpeg-turbo's `coef_bits`, used to decide on block smoothing).
    pub coef_bits: [i32; 10],
}

impl Component {
    /// The 64 coefficients of block (bx, by).
    #[inline(always)]
    pub fn block(&self, bx: usize, by: usize) -> &[i16] {
        let off = (by * self.stride + bx) * 64;
        &self.coefs[off..off + 64]
    }

    /// The 64 coefficients of block (bx, by), to decode into.
    #[inline(always)]
    pub fn block_mut(&mut self, bx: usize, by: usize) -> &mut [i16] {
        let off = (by * self.stride + bx) * 64;
        &mut self.coefs[off..off + 64]
    }
}

/// A frame header (SOF) and the frame's geometry.
pub struct Frame {
    pub width: usize,
    pub height: usize,
    pub progressive: bool,
    pub hmax: usize,
    pub vmax: usize,
    /// MCUs per row and column of an interleaved scan (A.2.3).
    pub mcus_x: usize,
    pub mcus_y: usize,
    pub comps: Vec<Component>,
}

/// Big-endian u16 at `p`.
fn be16(s: &[u8], p: usize) -> Result<usize, JpegError> {
    match s.get(p..p + 2) {
        Some(b) => Ok(((b[0] as usize) << 8) | b[1] as usize),
        None => Err(JpegError::corrupt("marker segment too short")),
    }
}

fn byte(s: &[u8], p: usize) -> Result<usize, JpegError> {
    s.get(p)
        .map(|&b| b as usize)
        .ok_or_else(|| JpegError::corrupt("marker segment too short"))
}

/// The payload of the segment whose length field starts at `pos`, and the position after it.
pub fn segment(data: &[u8], pos: usize) -> Result<(&[u8], usize), JpegError> {
    let len = be16(data, pos).map_err(|_| JpegError::corrupt("truncated marker segment"))?;
    if len < 2 {
        return Err(JpegError::corrupt("marker segment length below 2"));
    }
    let body = data
        .get(pos + 2..pos + len)
        .ok_or_else(|| JpegError::corrupt("truncated marker segment"))?;
    Ok((body, pos + len))
}

/// SOF0/1/2 (B.2.2). Only 8-bit precision is handled here; 12-bit images are "unsupported"
/// (the caller falls back to another decoder; Pillow itself refuses them).
/// `file_len` is the size of the whole file, for [`super::check_size`].
pub fn parse_sof(s: &[u8], progressive: bool, file_len: usize) -> Result<Frame, JpegError> {
    let precision = byte(s, 0)?;
    if precision != 8 {
        return Err(JpegError::Unsupported(format!("{precision}-bit samples")));
    }
    let height = be16(s, 1)?;
    let width = be16(s, 3)?;
    let n = byte(s, 5)?;
    if height == 0 {
        return Err(JpegError::Unsupported(
            "height defined by a DNL marker".into(),
        ));
    }
    if width == 0 {
        return Err(JpegError::corrupt("zero image width"));
    }
    if !matches!(n, 1 | 3 | 4) {
        return Err(JpegError::Unsupported(format!("{n} colour components")));
    }
    if s.len() < 6 + 3 * n {
        return Err(JpegError::corrupt("frame header too short"));
    }
    // Before the coefficient arrays below are allocated.
    super::check_size(width, height, file_len)?;
    let mut raw: Vec<(u8, usize, usize, usize)> = Vec::with_capacity(n);
    for i in 0..n {
        let id = s[6 + 3 * i];
        let hv = s[7 + 3 * i];
        let (h, v) = ((hv >> 4) as usize, (hv & 15) as usize);
        let tq = s[8 + 3 * i] as usize;
        if !(1..=4).contains(&h) || !(1..=4).contains(&v) {
            return Err(JpegError::corrupt("sampling factor outside 1..4"));
        }
        if tq > 3 {
            return Err(JpegError::corrupt("quantisation table selector above 3"));
        }
        if raw.iter().any(|&(other, ..)| other == id) {
            return Err(JpegError::corrupt("two components with the same id"));
        }
        raw.push((id, h, v, tq));
    }
    let hmax = raw.iter().map(|c| c.1).max().unwrap_or(1);
    let vmax = raw.iter().map(|c| c.2).max().unwrap_or(1);
    let mcus_x = width.div_ceil(8 * hmax);
    let mcus_y = height.div_ceil(8 * vmax);
    let comps = raw
        .into_iter()
        .map(|(id, h, v, tq)| {
            let cw = (width * h).div_ceil(hmax);
            let ch = (height * v).div_ceil(vmax);
            let stride = mcus_x * h;
            let rows = mcus_y * v;
            Component {
                id,
                h,
                v,
                tq,
                width: cw,
                height: ch,
                blocks_w: cw.div_ceil(8),
                blocks_h: ch.div_ceil(8),
                stride,
                coefs: vec![0i16; stride * rows * 64],
                qtable: None,
                coef_bits: [-1; 10],
            }
        })
        .collect();
    Ok(Frame {
        width,
        height,
        progressive,
        hmax,
        vmax,
        mcus_x,
        mcus_y,
        comps,
    })
}

/// DQT (B.2.4.1): 8- or 16-bit entries in zig-zag order, stored in natural order.
pub fn parse_dqt(mut s: &[u8], tables: &mut [Option<[u16; 64]>; 4]) -> Result<(), JpegError> {
    while !s.is_empty() {
        let pq = s[0] >> 4;
        let tq = (s[0] & 15) as usize;
        if tq > 3 || pq > 1 {
            return Err(JpegError::corrupt("bad quantisation table header"));
        }
        let size = if pq == 0 { 64 } else { 128 };
        let body = s
            .get(1..1 + size)
            .ok_or_else(|| JpegError::corrupt("truncated quantisation table"))?;
        let mut t = [0u16; 64];
        for (k, &nat) in ZIGZAG.iter().enumerate() {
            t[nat] = if pq == 0 {
                body[k] as u16
            } else {
                ((body[2 * k] as u16) << 8) | body[2 * k + 1] as u16
            };
        }
        tables[tq] = Some(t);
        s = &s[1 + size..];
    }
    Ok(())
}

/// DHT (B.2.4.2): one or more tables.
pub fn parse_dht(
    mut s: &[u8],
    dc: &mut [Option<HuffTable>; 4],
    ac: &mut [Option<HuffTable>; 4],
) -> Result<(), JpegError> {
    while !s.is_empty() {
        let tc = s[0] >> 4;
        let th = (s[0] & 15) as usize;
        if tc > 1 || th > 3 {
            return Err(JpegError::corrupt("bad Huffman table header"));
        }
        let counts: [u8; 16] = s
            .get(1..17)
            .and_then(|c| c.try_into().ok())
            .ok_or_else(|| JpegError::corrupt("truncated Huffman table"))?;
        let total: usize = counts.iter().map(|&c| c as usize).sum();
        let values = s
            .get(17..17 + total)
            .ok_or_else(|| JpegError::corrupt("truncated Huffman table"))?;
        let table = HuffTable::new(&counts, values, tc == 0)?;
        if tc == 0 {
            dc[th] = Some(table);
        } else {
            ac[th] = Some(table);
        }
        s = &s[17 + total..];
    }
    Ok(())
}

/// A scan header (B.2.3).
pub struct ScanHeader {
    /// (frame component index, DC table, AC table) per scan component.
    pub comps: Vec<(usize, usize, usize)>,
    pub ss: usize,
    pub se: usize,
    pub ah: u32,
    pub al: u32,
}

pub fn parse_sos(s: &[u8], frame: &Frame) -> Result<ScanHeader, JpegError> {
    let ns = byte(s, 0)?;
    if ns == 0 || ns > 4 || s.len() < 4 + 2 * ns {
        return Err(JpegError::corrupt("bad scan header"));
    }
    let mut comps: Vec<(usize, usize, usize)> = Vec::with_capacity(ns);
    for i in 0..ns {
        let cs = s[1 + 2 * i];
        let t = s[2 + 2 * i];
        let idx = frame
            .comps
            .iter()
            .position(|c| c.id == cs)
            .ok_or_else(|| JpegError::corrupt(format!("scan names unknown component {cs}")))?;
        if comps.iter().any(|&(c, ..)| c == idx) {
            return Err(JpegError::corrupt("component twice in one scan"));
        }
        let (td, ta) = ((t >> 4) as usize, (t & 15) as usize);
        if td > 3 || ta > 3 {
            return Err(JpegError::corrupt("Huffman table selector above 3"));
        }
        comps.push((idx, td, ta));
    }
    let p = 1 + 2 * ns;
    let (ss, se, a) = (s[p] as usize, s[p + 1] as usize, s[p + 2]);
    let blocks_in_mcu: usize = comps
        .iter()
        .map(|&(c, ..)| frame.comps[c].h * frame.comps[c].v)
        .sum();
    if ns > 1 && blocks_in_mcu > 10 {
        // T.81 B.2.3: at most 10 blocks per MCU.
        return Err(JpegError::corrupt("more than 10 blocks per MCU"));
    }
    Ok(ScanHeader {
        comps,
        ss,
        se,
        ah: (a >> 4) as u32,
        al: (a & 15) as u32,
    })
}

/// APP0: a JFIF segment (at least 14 bytes starting "JFIF\0") means YCbCr, as in
/// libjpeg-turbo's `examine_app0`.
pub fn is_jfif(s: &[u8]) -> bool {
    s.len() >= 14 && s.starts_with(b"JFIF\0")
}

/// APP14: the Adobe segment's colour transform byte (libjpeg-turbo's `examine_app14`).
pub fn adobe_transform(s: &[u8]) -> Option<u8> {
    if s.len() >= 12 && s.starts_with(b"Adobe") {
        Some(s[11])
    } else {
        None
    }
}
