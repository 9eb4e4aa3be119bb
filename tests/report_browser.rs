//! The reports of a real 2D run and a real digits run, rendered by a real browser (headless
//! Chromium): every image decodes, the console stays silent, and a screenshot of each page is
//! saved (`target/tmp/report-browser/{toy,digits}.png`) for people to look at.
//!
//! Without a `chromium` (or `chromium-browser`, `google-chrome`) on PATH, or `DIFFUSE_CHROMIUM`
//! naming one, the browser part is skipped with a message; `.ci/run` installs Debian's
//! `chromium` and sets `DIFFUSE_REQUIRE_BROWSER=1`, which turns the skip into a failure.
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("DIFFUSE_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ]
    .iter()
    .flat_map(|name| std::env::split_paths(&path).map(move |d| d.join(name)))
    .find(|p| p.is_file())
}

/// The browser, or `None` after saying why the check is skipped (a failure when CI requires it).
fn browser_or_skip(what: &str) -> Option<PathBuf> {
    let found = chromium();
    if found.is_none() {
        assert!(
            std::env::var("DIFFUSE_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "DIFFUSE_REQUIRE_BROWSER=1 but no chromium on PATH (apt-get install chromium)"
        );
        eprintln!(
            "SKIPPED the browser check of {what}: no chromium on PATH (apt-get install chromium, or set DIFFUSE_CHROMIUM)"
        );
    }
    found
}

fn out_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-browser");
    fs::create_dir_all(&d).unwrap();
    d
}

/// Runs headless Chromium on `page` with `args`, killed after 90 s; (stdout, console lines).
fn chromium_run(
    browser: &Path,
    profile: &Path,
    args: &[String],
    page: &Path,
) -> (String, Vec<String>) {
    // Output goes to files, not pipes: a page's DOM is larger than a pipe's buffer, and a
    // browser blocked on a full pipe would never exit.
    let (out_path, err_path) = (profile.with_extension("out"), profile.with_extension("err"));
    let mut child = Command::new(browser)
        .args([
            "--headless=new",
            "--disable-gpu",
            // Root in containers and CI has no user namespace for Chromium's sandbox.
            "--no-sandbox",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
            // A page that tried to fetch anything would fail loudly (console error).
            "--host-resolver-rules=MAP * ~NOTFOUND",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::from(fs::File::create(&out_path).unwrap()))
        .stderr(Stdio::from(fs::File::create(&err_path).unwrap()))
        .spawn()
        .expect("start chromium");
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            panic!("chromium did not finish {} in 90 s", page.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let stderr = String::from_utf8_lossy(&fs::read(&err_path).unwrap()).into_owned();
    // Chromium logs every console message (log, warning, error, uncaught exception) as
    // `…:CONSOLE(…)] "message", source: …`; the report has no script, so any is a defect.
    let console = stderr
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_string)
        .collect();
    let stdout = String::from_utf8_lossy(&fs::read(&out_path).unwrap()).into_owned();
    (stdout, console)
}

/// What the browser saw.
#[derive(Debug)]
struct Rendered {
    images: usize,
    broken: usize,
    height: usize,
    console: Vec<String>,
}

/// Renders `html` twice: a copy with a probe script that writes, after the load event, how
/// many images there are and how many failed to decode into the DOM (read back with
/// `--dump-dom`; at the screenshot's width, so the height it measures is the page's), then the
/// page itself, unchanged, as a full-height screenshot.
fn render(browser: &Path, html: &Path, name: &str) -> (Rendered, PathBuf) {
    let dir = out_dir();
    let profile = dir.join(format!("profile-{name}"));
    let page = fs::read_to_string(html).unwrap();
    let probe = "<script>addEventListener('load', () => { const i = [...document.images]; \
        document.body.setAttribute('data-probe', 'images=' + i.length + ' broken=' + \
        i.filter(m => !(m.complete && m.naturalWidth > 0)).length + ' height=' + \
        document.documentElement.scrollHeight); });</script>";
    let probed = match page.rfind("</body>") {
        Some(at) => format!("{}{probe}{}", &page[..at], &page[at..]),
        None => format!("{page}{probe}"),
    };
    let probe_page = dir.join(format!("{name}.probe.html"));
    fs::write(&probe_page, probed).unwrap();
    let (dom, mut console) = chromium_run(
        browser,
        &profile,
        &["--dump-dom".into(), "--window-size=1200,800".into()],
        &probe_page,
    );
    let attr = dom
        .split("data-probe=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_else(|| {
            panic!(
                "the probe did not run; DOM starts {:?}",
                &dom[..dom.len().min(300)]
            )
        });
    let field = |k: &str| -> usize {
        attr.split(' ')
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {k} in {attr:?}"))
    };
    let height = field("height");
    let shot = dir.join(format!("{name}.png"));
    let _ = fs::remove_file(&shot);
    let (_, more) = chromium_run(
        browser,
        &profile,
        &[
            format!("--screenshot={}", shot.display()),
            format!("--window-size=1200,{}", height.clamp(600, 16_000)),
        ],
        html,
    );
    console.extend(more);
    let r = Rendered {
        images: field("images"),
        broken: field("broken"),
        height,
        console,
    };
    (r, shot)
}

/// The number of `<img` tags in a report.
fn img_tags(html: &Path) -> usize {
    fs::read_to_string(html).unwrap().matches("<img ").count()
}

fn assert_renders(browser: &Path, html: &Path, name: &str, min_images: usize) {
    let (r, shot) = render(browser, html, name);
    eprintln!("{name}: {r:?}; screenshot {}", shot.display());
    assert!(r.console.is_empty(), "console messages: {:#?}", r.console);
    assert_eq!(r.broken, 0, "broken images in {}", html.display());
    assert_eq!(
        r.images,
        img_tags(html),
        "the browser saw other images than the page has"
    );
    assert!(r.images >= min_images, "{r:?}");
    let png = image::open(&shot).expect("a screenshot PNG");
    assert_eq!(png.width(), 1200);
    assert!(
        r.height > 800,
        "a page with figures is taller than that: {r:?}"
    );
}

/// Runs the binary; its stdout, after checking it succeeded.
fn diffuse(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_diffuse"))
        .args(args)
        .output()
        .unwrap();
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "diffuse {args:?}: {o}\n{e}");
    o
}

#[test]
fn the_probe_catches_broken_images_and_console_errors() {
    let Some(browser) = browser_or_skip("the probe itself") else {
        return;
    };
    let page = out_dir().join("bad.html");
    fs::write(
        &page,
        "<!DOCTYPE html><html><body><p>bad</p>\
         <img src=\"data:image/png;base64,iVBORw0KGgo=\">\
         <script>console.error('boom')</script></body></html>",
    )
    .unwrap();
    let (r, _) = render(&browser, &page, "bad");
    assert_eq!((r.images, r.broken), (1, 1), "{r:?}");
    assert!(r.console.iter().any(|l| l.contains("boom")), "{r:?}");
}

#[test]
fn toy_run_report_renders_in_a_browser() {
    let run = out_dir().join("toy-run");
    let _ = fs::remove_dir_all(&run);
    let out = diffuse(&[
        "toy",
        "run",
        "--steps",
        "200",
        "--eval-points",
        "128",
        "--threads",
        "2",
        "-q",
        "--out",
        run.to_str().unwrap(),
    ]);
    let html = run.join("report.html");
    assert!(
        out.contains(&format!("report: {}", html.display())),
        "toy run does not print the report's path: {out}"
    );
    let Some(browser) = browser_or_skip("the 2D run's report") else {
        return;
    };
    // DDPM and DDIM samples, the q(x_t) strip, the loss curve.
    assert_renders(&browser, &html, "toy", 4);
}

#[test]
fn digits_run_report_renders_in_a_browser() {
    let run = out_dir().join("digits-run");
    let _ = fs::remove_dir_all(&run);
    let out = diffuse(&[
        "image",
        "run",
        "--data",
        "digits",
        "--steps",
        "20",
        "-n",
        "20",
        "--sample-steps",
        "2",
        "--threads",
        "2",
        "-q",
        "--out",
        run.to_str().unwrap(),
    ]);
    let html = run.join("report.html");
    assert!(
        out.contains(&format!("report: {}", html.display())),
        "image run does not print the report's path: {out}"
    );
    let Some(browser) = browser_or_skip("the digits run's report") else {
        return;
    };
    // Two grids (w = 0 and guided), the loss curve, a preview.
    assert_renders(&browser, &html, "digits", 4);
}
