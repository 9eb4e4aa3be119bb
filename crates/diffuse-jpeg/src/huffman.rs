//! Huffman tables (ITU T.81 Annex C) and the entropy-coded-segment bit reader (T.81 F.2.2,
//! with the byte stuffing and marker rules of B.1.1.5 / F.1.2.3).
use super::JpegError;

/// Codes up to this many bits are resolved with one table look-up; longer ones (rare with the
/// usual tables) walk the canonical code ranges, like libjpeg's `jpeg_huff_decode`.
const LOOKAHEAD: u32 = 9;

/// A decoding table built from a DHT segment.
#[derive(Clone)]
pub struct HuffTable {
    /// Indexed by the next `LOOKAHEAD` bits: `(code length << 8) | symbol`, or 0 when the code
    /// is longer than `LOOKAHEAD` bits.
    fast: Vec<u16>,
    /// Largest code of each length 1..=16 (index = length), −1 when there is none.
    maxcode: [i32; 18],
    /// `values` index of the first code of each length minus that code.
    valoffset: [i32; 17],
    values: Vec<u8>,
}

impl HuffTable {
    /// Builds the canonical code of T.81 C.2 (Figures C.1–C.3) from the 16 per-length counts
    /// and the symbols. `dc` tables carry magnitude categories, which must stay below 16
    /// (libjpeg-turbo's `jpeg_make_d_derived_tbl` rejects the rest too).
    pub fn new(counts: &[u8; 16], values: &[u8], dc: bool) -> Result<Self, JpegError> {
        let total: usize = counts.iter().map(|&c| c as usize).sum();
        if total != values.len() || total > 256 {
            return Err(JpegError::corrupt("Huffman table with a bad symbol count"));
        }
        if dc && values.iter().any(|&v| v > 15) {
            return Err(JpegError::corrupt(
                "DC Huffman table with a category above 15",
            ));
        }
        let mut fast = vec![0u16; 1 << LOOKAHEAD];
        let mut maxcode = [-1i32; 18];
        let mut valoffset = [0i32; 17];
        let mut code: u32 = 0;
        let mut k = 0usize;
        for len in 1..=16u32 {
            let n = counts[len as usize - 1] as usize;
            valoffset[len as usize] = k as i32 - code as i32;
            for _ in 0..n {
                // A code that does not fit its length means the counts over-fill the tree.
                if code >= (1 << len) {
                    return Err(JpegError::corrupt("Huffman table with too many codes"));
                }
                if len <= LOOKAHEAD {
                    let shift = LOOKAHEAD - len;
                    let first = (code << shift) as usize;
                    let entry = ((len as u16) << 8) | values[k] as u16;
                    for slot in &mut fast[first..first + (1 << shift)] {
                        *slot = entry;
                    }
                }
                code += 1;
                k += 1;
            }
            if n > 0 {
                maxcode[len as usize] = code as i32 - 1;
            }
            code <<= 1;
        }
        Ok(HuffTable {
            fast,
            maxcode,
            valoffset,
            values: values.to_vec(),
        })
    }
}

/// Reads bits from an entropy-coded segment. Stuffed `FF 00` pairs yield `FF`; a marker
/// (`FF` followed by anything but `00`/`FF`) ends the data, after which zero bits are supplied,
/// as libjpeg-turbo's `jpeg_fill_bit_buffer` does. Consuming any of those zero bits means the
/// segment was cut short; [`BitReader::check_overrun`] turns that into an error.
pub struct BitReader<'a> {
    data: &'a [u8],
    /// Next unread byte; stays on the `FF` of a marker once one is reached.
    pub pos: usize,
    /// The low `count` bits are unread, most significant first.
    bits: u64,
    count: u32,
    /// How many of the buffered bits are padding inserted after the data ended.
    pad_bits: u32,
}

impl<'a> BitReader<'a> {
    pub fn new(data: &'a [u8], pos: usize) -> Self {
        BitReader {
            data,
            pos,
            bits: 0,
            count: 0,
            pad_bits: 0,
        }
    }

    /// Tops the buffer up to more than 56 bits.
    #[inline(never)]
    fn refill(&mut self) {
        while self.count <= 56 {
            let byte = match self.data.get(self.pos) {
                Some(&0xFF) => {
                    // Skip fill bytes (T.81 B.1.1.2), then decide stuffing vs marker.
                    let mut p = self.pos + 1;
                    while self.data.get(p) == Some(&0xFF) {
                        p += 1;
                    }
                    if self.data.get(p) == Some(&0x00) {
                        self.pos = p + 1;
                        0xFF
                    } else {
                        self.pad_bits += 8;
                        0
                    }
                }
                Some(&b) => {
                    self.pos += 1;
                    b
                }
                None => {
                    self.pad_bits += 8;
                    0
                }
            };
            self.bits = (self.bits << 8) | byte as u64;
            self.count += 8;
        }
    }

    #[inline(always)]
    fn ensure(&mut self, n: u32) {
        if self.count < n {
            self.refill();
        }
    }

    /// The next `n` (≤ 16) bits without consuming them.
    #[inline(always)]
    fn peek(&mut self, n: u32) -> u32 {
        self.ensure(n);
        ((self.bits >> (self.count - n)) & ((1u64 << n) - 1)) as u32
    }

    #[inline(always)]
    fn consume(&mut self, n: u32) {
        self.count -= n;
    }

    /// `n` (0..=16) raw bits as an unsigned number.
    #[inline(always)]
    pub fn bits(&mut self, n: u32) -> u32 {
        if n == 0 {
            return 0;
        }
        let v = self.peek(n);
        self.consume(n);
        v
    }

    #[inline(always)]
    pub fn bit(&mut self) -> bool {
        self.bits(1) != 0
    }

    /// RECEIVE then EXTEND (T.81 F.2.2.1, Figure F.12): `s` bits read as a signed magnitude of
    /// category `s`.
    #[inline(always)]
    pub fn receive_extend(&mut self, s: u32) -> i32 {
        if s == 0 {
            return 0;
        }
        let v = self.bits(s) as i32;
        if v < (1 << (s - 1)) {
            v - (1 << s) + 1
        } else {
            v
        }
    }

    /// DECODE (T.81 F.2.2.3, Figure F.16): one symbol.
    #[inline(always)]
    pub fn decode(&mut self, t: &HuffTable) -> Result<u8, JpegError> {
        let look = self.peek(16);
        let entry = t.fast[(look >> (16 - LOOKAHEAD)) as usize];
        if entry != 0 {
            self.consume((entry >> 8) as u32);
            return Ok(entry as u8);
        }
        for len in LOOKAHEAD + 1..=16 {
            let code = (look >> (16 - len)) as i32;
            if code <= t.maxcode[len as usize] {
                self.consume(len);
                let idx = (t.valoffset[len as usize] + code) as usize;
                return t
                    .values
                    .get(idx)
                    .copied()
                    .ok_or_else(|| JpegError::corrupt("bad Huffman code"));
            }
        }
        Err(JpegError::corrupt("bad Huffman code"))
    }

    /// Errors when bits past the end of the segment's data were used: the file is truncated or
    /// a marker sits where data should be.
    #[inline(always)]
    pub fn check_overrun(&self) -> Result<(), JpegError> {
        if self.count < self.pad_bits {
            Err(JpegError::corrupt(
                "entropy-coded data ends early (truncated file?)",
            ))
        } else {
            Ok(())
        }
    }

    /// Drops the buffered bits (the rest of the last byte is padding, T.81 F.1.2.3) and moves
    /// past the restart marker `RST<expected>` (E.1.4, libjpeg-turbo's `process_restart`).
    /// Stray bytes before the marker are skipped like libjpeg-turbo does; any other marker is
    /// an error.
    pub fn restart(&mut self, expected: u8) -> Result<(), JpegError> {
        self.check_overrun()?;
        self.bits = 0;
        self.count = 0;
        self.pad_bits = 0;
        let (marker, after) = next_marker(self.data, self.pos)
            .ok_or_else(|| JpegError::corrupt("missing restart marker (truncated file?)"))?;
        if marker != 0xD0 + expected {
            return Err(JpegError::corrupt(format!(
                "expected restart marker RST{expected}, found marker {marker:#04X}"
            )));
        }
        self.pos = after;
        Ok(())
    }

    /// Position from which marker parsing resumes after the scan.
    pub fn end(&self) -> usize {
        self.pos
    }
}

/// The next marker at or after `pos`: its code and the position after it. Bytes that are not a
/// marker are skipped (libjpeg-turbo's `next_marker` does the same, with a warning).
pub fn next_marker(data: &[u8], mut pos: usize) -> Option<(u8, usize)> {
    loop {
        while *data.get(pos)? != 0xFF {
            pos += 1;
        }
        while *data.get(pos)? == 0xFF {
            pos += 1;
        }
        let code = *data.get(pos)?;
        pos += 1;
        if code != 0 {
            return Some((code, pos));
        }
    }
}
