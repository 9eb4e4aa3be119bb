//! `diffuse doctor`: the report carries what a bug report needs and the self-check passes on
//! any CPU the project supports (its bounds are f32 rounding bounds, not fixed tolerances).
use std::process::Command;

#[test]
fn doctor_reports_and_self_check_passes() {
    let out = Command::new(env!("CARGO_BIN_EXE_diffuse"))
        .arg("doctor")
        .output()
        .expect("run diffuse doctor");
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}\n{err}");
    for label in [
        "build:",
        "features:",
        "backend:",
        "cpu:",
        "cpu features:",
        "kernels:",
        "threads:",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(label)),
            "no `{label}` line:\n{text}"
        );
    }
    #[cfg(target_arch = "x86_64")]
    assert!(text.contains("sse4.2"), "{text}");
    let checks = text.lines().filter(|l| l.starts_with("  ok   ")).count();
    assert!(checks >= 10, "{text}");
    // The kernels the real networks run are among them, on the path the dispatch picks.
    for name in ["Winograd", "GroupNorm+SiLU", "softmax"] {
        assert!(
            text.lines()
                .any(|l| l.starts_with("  ok   ") && l.contains(name)),
            "no passing {name} check:\n{text}"
        );
    }
    assert!(
        text.contains("Winograd F4"),
        "the default variant runs: {text}"
    );
    assert!(text.contains("(fused kernel)"), "{text}");
    for f in ["wgpu", "vulkan", "cuda"] {
        let line = text.lines().find(|l| l.starts_with("features:")).unwrap();
        assert!(line.contains(f), "the features line names {f}: {line}");
    }
    assert!(
        text.contains(&format!("all {checks} checks passed")),
        "{text}"
    );
}

#[test]
fn version_points_to_doctor() {
    let out = Command::new(env!("CARGO_BIN_EXE_diffuse"))
        .arg("--version")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(env!("CARGO_PKG_VERSION")), "{text}");
    assert!(text.contains("diffuse doctor"), "{text}");
}
