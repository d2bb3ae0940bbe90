//! `synod bench-plot` draws PNGs from a small hand-written CSV and JSON
//! fixture (the formats `synod bench --csv` and `--json` write).

use std::path::Path;
use std::process::Command;

const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];

const CSV: &str = "\
label,clients,pipeline,read_ratio,value_size,seconds,requests,errors,ops_per_s,p50_ms,p90_ms,p99_ms,p999_ms,max_ms
synod/set-c1,1,1,0,100,1.000,900,0,900.0,1.0,1.2,1.5,2.0,3.0
synod/get-c1,1,1,1,100,1.000,1500,0,1500.0,0.6,0.8,1.0,1.5,2.0
synod/set-c10,10,1,0,100,1.000,5000,0,5000.0,2.0,2.5,3.0,4.0,5.0
synod/get-c10,10,1,1,100,1.000,8000,0,8000.0,1.2,1.5,2.0,3.0,4.0
synod/set-c50,50,1,0,100,1.000,9000,0,9000.0,5.0,6.0,8.0,9.0,10.0
synod/get-c50,50,1,1,100,1.000,12000,0,12000.0,4.0,5.0,6.0,7.0,8.0
synod/set-p16,50,16,0,100,1.000,40000,0,40000.0,20.0,25.0,30.0,35.0,40.0
etcd/set-c1,1,1,0,100,1.000,700,0,700.0,1.4,1.6,2.0,3.0,4.0
etcd/get-c1,1,1,1,100,1.000,1100,0,1100.0,0.9,1.0,1.2,2.0,3.0
etcd/set-c10,10,1,0,100,1.000,3000,0,3000.0,3.0,3.5,4.0,5.0,6.0
etcd/get-c10,10,1,1,100,1.000,6000,0,6000.0,1.6,2.0,2.5,3.0,4.0
etcd/set-c50,50,1,0,100,1.000,6000,0,6000.0,8.0,9.0,11.0,13.0,15.0
etcd/get-c50,50,1,1,100,1.000,10000,0,10000.0,5.0,6.0,7.0,8.0,9.0
";

fn run_json(label: &str, read_ratio: f64, scale: f64) -> String {
    let cdf: Vec<[f64; 2]> = [0.0, 0.5, 0.75, 0.875, 0.9375, 0.99, 1.0]
        .iter()
        .enumerate()
        .map(|(i, q)| [scale * (1.0 + i as f64), *q])
        .collect();
    serde_json::json!({
        "label": label,
        "protocol": "resp",
        "clients": 50,
        "pipeline": 1,
        "read_ratio": read_ratio,
        "value_size": 100,
        "seconds": 1.0,
        "requests": 1000,
        "errors": 0,
        "throughput": 1000.0,
        "latency_ms": {"p50": 1.0, "p90": 2.0, "p99": 3.0, "p999": 4.0, "max": 5.0, "mean": 1.5},
        "cdf": cdf,
    })
    .to_string()
}

/// The PNG's (width, height) after checking its signature, or a panic.
fn png_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        bytes.len() > 1000,
        "{} is {} bytes",
        path.display(),
        bytes.len()
    );
    assert_eq!(bytes[..8], PNG_SIGNATURE, "{} is not a PNG", path.display());
    let be =
        |at: usize| u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    (be(16), be(20))
}

#[test]
fn bench_plot_draws_pngs_from_csv_and_json() {
    if !Path::new(FONT).exists() {
        eprintln!("skipped: {FONT} is missing (apt-get install fonts-dejavu-core)");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let csv = dir.path().join("results.csv");
    std::fs::write(&csv, CSV).expect("write csv");
    for (name, label, read_ratio, scale) in [
        ("synod-set-c50", "synod/set-c50", 0.0, 1.0),
        ("synod-get-c50", "synod/get-c50", 1.0, 0.5),
        ("etcd-set-c50", "etcd/set-c50", 0.0, 2.0),
        ("etcd-get-c50", "etcd/get-c50", 1.0, 0.8),
    ] {
        let path = dir.path().join(format!("{name}.json"));
        std::fs::write(path, run_json(label, read_ratio, scale)).expect("write json");
    }
    let out = dir.path().join("plots");
    let result = Command::new(env!("CARGO_BIN_EXE_synod"))
        .arg("bench-plot")
        .arg("--csv")
        .arg(&csv)
        .arg("--json-dir")
        .arg(dir.path())
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run synod bench-plot");
    assert!(
        result.status.success(),
        "{}{}",
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );
    assert_eq!(png_size(&out.join("throughput.png")), (1280, 480));
    assert_eq!(png_size(&out.join("latency-cdf.png")), (1280, 480));
}

#[test]
fn bench_plot_without_its_font_says_what_to_install() {
    let dir = tempfile::tempdir().expect("temp dir");
    let csv = dir.path().join("results.csv");
    std::fs::write(&csv, CSV).expect("write csv");
    let result = Command::new(env!("CARGO_BIN_EXE_synod"))
        .arg("bench-plot")
        .arg("--csv")
        .arg(&csv)
        .arg("--json-dir")
        .arg(dir.path())
        .arg("--out")
        .arg(dir.path())
        .arg("--font")
        .arg(dir.path().join("no-such-font.ttf"))
        .output()
        .expect("run synod bench-plot");
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(!result.status.success(), "{stderr}");
    assert!(
        stderr.contains("no-such-font.ttf") && stderr.contains("fonts-dejavu-core"),
        "{stderr}"
    );
    assert!(!dir.path().join("throughput.png").exists());
}
