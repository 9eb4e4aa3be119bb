//! Entropy decoding of one scan into the frame's coefficient arrays: sequential Huffman
//! (T.81 F.2.2) and progressive Huffman (T.81 G.1.2: DC first/refine, AC first/refine with
//! end-of-band runs), with restart intervals (E.1.4). Same bit-level semantics as
//! libjpeg-turbo's `jdhuff.c` / `jdphuff.c` on valid data; invalid data is an error.
use super::huffman::{BitReader, HuffTable};
use super::markers::{Frame, ScanHeader, ZIGZAG};
use super::JpegError;

/// Which of the five block decoders a scan uses.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Sequential,
    DcFirst,
    DcRefine,
    AcFirst,
    AcRefine,
}

/// Decodes the scan whose entropy-coded data starts at `pos`; returns where it ended.
pub fn decode_scan(
    frame: &mut Frame,
    scan: &ScanHeader,
    dc_tables: &[Option<HuffTable>; 4],
    ac_tables: &[Option<HuffTable>; 4],
    restart_interval: usize,
    data: &[u8],
    pos: usize,
) -> Result<usize, JpegError> {
    let kind = scan_kind(frame, scan)?;
    // Tables the scan needs must have been defined (the DC-refine and AC scans skip some).
    let mut dc: Vec<Option<&HuffTable>> = Vec::with_capacity(scan.comps.len());
    let mut ac: Vec<Option<&HuffTable>> = Vec::with_capacity(scan.comps.len());
    for &(_, td, ta) in &scan.comps {
        let need_dc = matches!(kind, Kind::Sequential | Kind::DcFirst);
        let need_ac = matches!(kind, Kind::Sequential | Kind::AcFirst | Kind::AcRefine);
        let d = dc_tables[td].as_ref();
        let a = ac_tables[ta].as_ref();
        if (need_dc && d.is_none()) || (need_ac && a.is_none()) {
            return Err(JpegError::corrupt("scan uses an undefined Huffman table"));
        }
        dc.push(d);
        ac.push(a);
    }
    record_coef_bits(frame, scan);

    let mut r = BitReader::new(data, pos);
    let mut pred = [0i32; 4];
    let mut eobrun: u32 = 0;
    let mut next_rst: u8 = 0;

    // A single-component scan codes the component's own blocks one per MCU (A.2.2); an
    // interleaved one codes H_i×V_i blocks of each component per MCU (A.2.3).
    let single = scan.comps.len() == 1;
    let (mx, my) = if single {
        let c = &frame.comps[scan.comps[0].0];
        (c.blocks_w, c.blocks_h)
    } else {
        (frame.mcus_x, frame.mcus_y)
    };
    let (ss, se, al) = (scan.ss, scan.se, scan.al);
    let mut mcu = 0usize;
    for y in 0..my {
        for x in 0..mx {
            if restart_interval > 0 && mcu > 0 && mcu.is_multiple_of(restart_interval) {
                r.restart(next_rst)?;
                next_rst = (next_rst + 1) & 7;
                pred = [0; 4];
                eobrun = 0;
            }
            mcu += 1;
            for (si, &(ci, ..)) in scan.comps.iter().enumerate() {
                let comp = &mut frame.comps[ci];
                let (bh, bv) = if single { (1, 1) } else { (comp.h, comp.v) };
                for j in 0..bv {
                    for i in 0..bh {
                        let blk = comp.block_mut(x * bh + i, y * bv + j);
                        match kind {
                            Kind::Sequential => {
                                sequential(&mut r, blk, dc[si], ac[si], &mut pred[si])?
                            }
                            Kind::DcFirst => dc_first(&mut r, blk, dc[si], &mut pred[si], al)?,
                            Kind::DcRefine => {
                                if r.bit() {
                                    blk[0] |= 1 << al;
                                }
                            }
                            Kind::AcFirst => {
                                ac_first(&mut r, blk, ac[si], ss, se, al, &mut eobrun)?
                            }
                            Kind::AcRefine => {
                                ac_refine(&mut r, blk, ac[si], ss, se, al, &mut eobrun)?
                            }
                        }
                    }
                }
            }
            r.check_overrun()?;
        }
    }
    Ok(r.end())
}

/// Checks the scan parameters against T.81 G.1.1.1.1 (progressive) and picks the decoder.
/// Sequential scans ignore Ss/Se/Ah/Al like libjpeg-turbo (which only warns).
fn scan_kind(frame: &Frame, scan: &ScanHeader) -> Result<Kind, JpegError> {
    if !frame.progressive {
        return Ok(Kind::Sequential);
    }
    let (ss, se, ah, al) = (scan.ss, scan.se, scan.ah, scan.al);
    let bad = if ss == 0 {
        se != 0
    } else {
        se < ss || se > 63 || scan.comps.len() != 1
    };
    if bad || al > 13 || (ah != 0 && ah != al + 1) {
        return Err(JpegError::corrupt("bad progressive scan parameters"));
    }
    Ok(match (ss == 0, ah == 0) {
        (true, true) => Kind::DcFirst,
        (true, false) => Kind::DcRefine,
        (false, true) => Kind::AcFirst,
        (false, false) => Kind::AcRefine,
    })
}

/// Tracks which coefficients are fully known (libjpeg-turbo keeps `coef_bits` in
/// `start_input_pass` of `jdphuff.c`); the first scan of a component also latches its
/// quantisation table (done by the caller).
fn record_coef_bits(frame: &mut Frame, scan: &ScanHeader) {
    if !frame.progressive {
        return;
    }
    for &(ci, ..) in &scan.comps {
        let bits = &mut frame.comps[ci].coef_bits;
        for b in bits.iter_mut().take(scan.se + 1).skip(scan.ss) {
            *b = scan.al as i32;
        }
    }
}

/// A sequential block (T.81 F.2.2.1–F.2.2.2): DC difference, then run/size AC symbols.
#[inline(always)]
fn sequential(
    r: &mut BitReader,
    blk: &mut [i16],
    dc: Option<&HuffTable>,
    ac: Option<&HuffTable>,
    pred: &mut i32,
) -> Result<(), JpegError> {
    let (Some(dc), Some(ac)) = (dc, ac) else {
        return Err(JpegError::corrupt("missing Huffman table"));
    };
    let t = r.decode(dc)? as u32;
    *pred = pred.wrapping_add(r.receive_extend(t));
    blk[0] = *pred as i16;
    let mut k = 1usize;
    while k < 64 {
        let rs = r.decode(ac)?;
        let (run, size) = ((rs >> 4) as usize, (rs & 15) as u32);
        if size != 0 {
            k += run;
            if k > 63 {
                return Err(JpegError::corrupt("AC coefficient index past 63"));
            }
            blk[ZIGZAG[k]] = r.receive_extend(size) as i16;
            k += 1;
        } else if run == 15 {
            k += 16;
        } else {
            break;
        }
    }
    Ok(())
}

/// First DC scan of a progressive image (G.1.2.1): the difference, scaled by 2^Al.
#[inline(always)]
fn dc_first(
    r: &mut BitReader,
    blk: &mut [i16],
    dc: Option<&HuffTable>,
    pred: &mut i32,
    al: u32,
) -> Result<(), JpegError> {
    let dc = dc.ok_or_else(|| JpegError::corrupt("missing Huffman table"))?;
    let t = r.decode(dc)? as u32;
    *pred = pred.wrapping_add(r.receive_extend(t));
    blk[0] = pred.wrapping_shl(al) as i16;
    Ok(())
}

/// First AC scan of a band (G.1.2.2): run/size symbols as in sequential mode, plus end-of-band
/// runs EOBn covering 2^n + (n extra bits) − 1 further blocks.
#[inline(always)]
fn ac_first(
    r: &mut BitReader,
    blk: &mut [i16],
    ac: Option<&HuffTable>,
    ss: usize,
    se: usize,
    al: u32,
    eobrun: &mut u32,
) -> Result<(), JpegError> {
    if *eobrun > 0 {
        *eobrun -= 1;
        return Ok(());
    }
    let ac = ac.ok_or_else(|| JpegError::corrupt("missing Huffman table"))?;
    let mut k = ss;
    while k <= se {
        let rs = r.decode(ac)?;
        let (run, size) = ((rs >> 4) as u32, (rs & 15) as u32);
        if size != 0 {
            k += run as usize;
            if k > se {
                return Err(JpegError::corrupt("AC coefficient index past the band"));
            }
            blk[ZIGZAG[k]] = r.receive_extend(size).wrapping_shl(al) as i16;
            k += 1;
        } else if run == 15 {
            k += 16;
        } else {
            *eobrun = (1 << run) - 1;
            if run > 0 {
                *eobrun += r.bits(run);
            }
            break;
        }
    }
    Ok(())
}

/// AC refinement scan (G.1.2.3): one correction bit for every coefficient already non-zero,
/// and newly non-zero coefficients of magnitude 2^Al placed by zero-run counts that skip the
/// non-zero ones — the order of reads follows libjpeg-turbo's `decode_mcu_AC_refine`.
#[inline(always)]
fn ac_refine(
    r: &mut BitReader,
    blk: &mut [i16],
    ac: Option<&HuffTable>,
    ss: usize,
    se: usize,
    al: u32,
    eobrun: &mut u32,
) -> Result<(), JpegError> {
    let p1: i16 = 1i16.wrapping_shl(al);
    let m1: i16 = (-1i16).wrapping_shl(al);
    let mut k = ss;
    if *eobrun == 0 {
        let ac = ac.ok_or_else(|| JpegError::corrupt("missing Huffman table"))?;
        while k <= se {
            let rs = r.decode(ac)?;
            let mut run = (rs >> 4) as i32;
            let size = rs & 15;
            let mut value: i16 = 0;
            if size != 0 {
                // Only magnitude-1 corrections are valid here (G.1.2.3).
                if size != 1 {
                    return Err(JpegError::corrupt("bad refinement coefficient size"));
                }
                value = if r.bit() { p1 } else { m1 };
            } else if run != 15 {
                *eobrun = 1 << run;
                if run > 0 {
                    *eobrun += r.bits(run as u32);
                }
                break;
            }
            // Correct non-zero coefficients on the way; stop on the run-th zero one.
            while k <= se {
                let c = &mut blk[ZIGZAG[k]];
                if *c != 0 {
                    refine(r, c, p1, m1);
                } else {
                    if run == 0 {
                        break;
                    }
                    run -= 1;
                }
                k += 1;
            }
            if value != 0 {
                if k > se {
                    return Err(JpegError::corrupt("AC coefficient index past the band"));
                }
                blk[ZIGZAG[k]] = value;
            }
            k += 1;
        }
    }
    if *eobrun > 0 {
        // Inside an end-of-band run only the correction bits of non-zero coefficients remain.
        while k <= se {
            let c = &mut blk[ZIGZAG[k]];
            if *c != 0 {
                refine(r, c, p1, m1);
            }
            k += 1;
        }
        *eobrun -= 1;
    }
    Ok(())
}

/// One correction bit for a coefficient that is already non-zero: adds 2^Al away from zero
/// unless that bit is already set.
#[inline(always)]
fn refine(r: &mut BitReader, c: &mut i16, p1: i16, m1: i16) {
    if r.bit() && (*c & p1) == 0 {
        *c = if *c >= 0 {
            c.wrapping_add(p1)
        } else {
            c.wrapping_add(m1)
        };
    }
}
