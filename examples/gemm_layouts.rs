use std::time::Instant;
fn main() {
    let (m, n, k) = (128usize, 1152usize, 4096usize);
    let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1).collect();
    let b: Vec<f32> = (0..n * k).map(|i| (i % 5) as f32 * 0.1).collect();
    let mut c = vec![0f32; m * n];
    // (lhs_cs, lhs_rs, rhs_cs, rhs_rs, name)
    let layouts: [(isize, isize, isize, isize, &str); 4] = [
        (1, k as isize, k as isize, 1, "A rowmajor(K contig), B colmajor(K contig)  [current]"),
        (m as isize, 1, k as isize, 1, "A colmajor, B colmajor(K contig)"),
        (m as isize, 1, 1, n as isize, "A colmajor, B rowmajor(N contig)"),
        (1, k as isize, 1, n as isize, "A rowmajor, B rowmajor"),
    ];
    for par in [gemm::Parallelism::Rayon(0), gemm::Parallelism::None] {
        for &(lcs, lrs, rcs, rrs, name) in &layouts {
            let mut best = f64::MAX;
            for _ in 0..7 {
                let t = Instant::now();
                unsafe {
                    gemm::gemm(m, n, k, c.as_mut_ptr(), 1, n as isize, false, a.as_ptr(), lcs, lrs, b.as_ptr(), rcs, rrs, 0.0, 1.0, false, false, false, par);
                }
                best = best.min(t.elapsed().as_secs_f64());
            }
            println!("{:?} {name}: {:.2} ms, {:.1} GFLOP/s", matches!(par, gemm::Parallelism::None), best * 1e3, 2.0 * (m * n * k) as f64 / best / 1e9);
        }
    }
}
