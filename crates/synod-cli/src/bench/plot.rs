//! `synod bench-plot`: PNG plots of `synod bench` results.
//!
//! - `throughput.png`: ops/s against clients (log-log), one line per system,
//!   SET (read ratio 0) on the left, GET (read ratio 1) on the right, from
//!   the CSV rows with pipeline 1.
//! - `latency-cdf.png`: the latency CDF of the SET and GET runs with
//!   `--cdf-clients` clients and pipeline 1, one line per system, from the
//!   JSON files (`synod bench --json` writes the CDF as `[ms, fraction]`
//!   pairs).
//!
//! A run's system is its label up to the first `/` (`synod/set-c50` is
//! `synod`), as `bench/side-by-side.sh` labels them. Text is drawn with a
//! TrueType font read at run time (no system font libraries).

use clap::Args;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct PlotArgs {
    /// Results CSV written by `synod bench --csv`.
    #[arg(long, default_value = "bench/report/results.csv")]
    csv: PathBuf,
    /// Folder with the JSON files written by `synod bench --json` (every
    /// `*.json` in it is read).
    #[arg(long, default_value = "bench/report")]
    json_dir: PathBuf,
    /// Folder for throughput.png and latency-cdf.png.
    #[arg(long, default_value = "bench/report")]
    out: PathBuf,
    /// The latency CDF shows the runs with this many clients (pipeline 1).
    #[arg(long, default_value_t = 50)]
    cdf_clients: u32,
    /// TrueType font for the text (Debian package fonts-dejavu-core).
    #[arg(
        long,
        default_value = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
    )]
    font: PathBuf,
}

/// More JSON files than this in `--json-dir` is a wrong folder, not a report.
const JSON_FILES_MAX: usize = 10_000;
const PANEL_WIDTH_PX: u32 = 640;
const PANEL_HEIGHT_PX: u32 = 480;

pub fn main(args: PlotArgs) -> ExitCode {
    match run(&args) {
        Ok(written) => {
            for path in written {
                println!("wrote {}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("synod bench-plot: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &PlotArgs) -> Result<Vec<PathBuf>, String> {
    load_font(&args.font)?;
    let rows = read_csv(&args.csv)?;
    let cdfs = read_cdfs(&args.json_dir, args.cdf_clients)?;
    if rows.is_empty() && cdfs.is_empty() {
        return Err(format!(
            "nothing to plot: no pipeline-1 SET or GET rows in {} and no {}-client runs in {}",
            args.csv.display(),
            args.cdf_clients,
            args.json_dir.display()
        ));
    }
    let mut systems = Systems::default();
    rows.iter().for_each(|r| systems.add(&r.system));
    cdfs.iter().for_each(|c| systems.add(&c.system));
    std::fs::create_dir_all(&args.out)
        .map_err(|e| format!("cannot create {}: {e}", args.out.display()))?;
    let throughput = args.out.join("throughput.png");
    draw_throughput(&throughput, &rows, &systems)?;
    let cdf = args.out.join("latency-cdf.png");
    draw_cdfs(&cdf, &cdfs, &systems, args.cdf_clients)?;
    Ok(vec![throughput, cdf])
}

/// Registers the font as "sans-serif", the family every label uses.
fn load_font(path: &Path) -> Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| {
        format!(
            "cannot read the font {}: {e} (install fonts-dejavu-core, or pass --font FILE.ttf)",
            path.display()
        )
    })?;
    // plotters keeps fonts for the life of the process; one leak per run.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| format!("{} is not a TrueType or OpenType font", path.display()))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Set,
    Get,
}

impl Kind {
    /// SET-only and GET-only runs; mixes are not plotted.
    fn of(read_ratio: f64) -> Option<Kind> {
        if read_ratio == 0.0 {
            Some(Kind::Set)
        } else if read_ratio == 1.0 {
            Some(Kind::Get)
        } else {
            None
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Set => "SET",
            Kind::Get => "GET",
        }
    }
}

/// A CSV row the throughput plot uses.
struct Row {
    system: String,
    kind: Kind,
    clients: u32,
    ops_per_s: f64,
}

/// A JSON run's CDF: (ms, fraction of requests at or below).
struct Cdf {
    system: String,
    kind: Kind,
    points: Vec<(f64, f64)>,
}

fn system_of(label: &str) -> String {
    match label.split_once('/') {
        Some((system, _)) if !system.is_empty() => system.to_string(),
        _ if label.is_empty() => "run".to_string(),
        _ => label.to_string(),
    }
}

fn read_csv(path: &Path) -> Result<Vec<Row>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split(',').collect();
    let column = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .ok_or_else(|| format!("{} has no '{name}' column", path.display()))
    };
    let (label, clients, pipeline, read_ratio, ops) = (
        column("label")?,
        column("clients")?,
        column("pipeline")?,
        column("read_ratio")?,
        column("ops_per_s")?,
    );
    let mut rows = Vec::new();
    for (number, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split(',').collect();
        let bad = || {
            format!(
                "{} line {}: cannot read '{line}'",
                path.display(),
                number + 2
            )
        };
        let field = |i: usize| fields.get(i).copied().ok_or_else(bad);
        let number_in = |i: usize| field(i)?.trim().parse::<f64>().map_err(|_| bad());
        let Some(kind) = Kind::of(number_in(read_ratio)?) else {
            continue;
        };
        if number_in(pipeline)? != 1.0 {
            continue;
        }
        rows.push(Row {
            system: system_of(field(label)?),
            kind,
            clients: field(clients)?.trim().parse().map_err(|_| bad())?,
            ops_per_s: number_in(ops)?,
        });
    }
    Ok(rows)
}

/// The CDFs of the pipeline-1 SET and GET runs with `clients` clients, in
/// file-name order.
fn read_cdfs(dir: &Path, clients: u32) -> Result<Vec<Cdf>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    if paths.len() > JSON_FILES_MAX {
        return Err(format!(
            "{} holds {} JSON files (at most {JSON_FILES_MAX})",
            dir.display(),
            paths.len()
        ));
    }
    paths.sort();
    let mut cdfs = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let run: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
        let Some(kind) = run["read_ratio"].as_f64().and_then(Kind::of) else {
            continue;
        };
        if run["clients"].as_u64() != Some(u64::from(clients))
            || run["pipeline"].as_u64() != Some(1)
        {
            continue;
        }
        let points: Vec<(f64, f64)> = run["cdf"]
            .as_array()
            .map(|points| {
                points
                    .iter()
                    .filter_map(|p| Some((p[0].as_f64()?, p[1].as_f64()?)))
                    .filter(|(ms, _)| *ms > 0.0)
                    .collect()
            })
            .unwrap_or_default();
        if points.is_empty() {
            continue;
        }
        cdfs.push(Cdf {
            system: system_of(run["label"].as_str().unwrap_or("")),
            kind,
            points,
        });
    }
    Ok(cdfs)
}

/// Systems in order of first appearance, each with its own colour in both
/// plots.
#[derive(Default)]
struct Systems {
    names: Vec<String>,
}

impl Systems {
    fn add(&mut self, name: &str) {
        if !self.names.iter().any(|n| n == name) {
            self.names.push(name.to_string());
        }
    }

    fn index(&self, name: &str) -> usize {
        self.names
            .iter()
            .position(|n| n == name)
            .unwrap_or(self.names.len())
    }

    fn colour(&self, name: &str) -> RGBColor {
        const PALETTE: [RGBColor; 6] = [
            RGBColor(31, 119, 180),
            RGBColor(214, 39, 40),
            RGBColor(44, 160, 44),
            RGBColor(148, 103, 189),
            RGBColor(255, 127, 14),
            RGBColor(23, 190, 207),
        ];
        PALETTE[self.index(name) % PALETTE.len()]
    }
}

fn draw_error(e: impl std::fmt::Display) -> String {
    format!("cannot draw: {e}")
}

/// A log axis range around `values` (all positive), padded so that points
/// do not sit on the frame.
fn log_range(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (low, high) = values
        .filter(|v| *v > 0.0)
        .fold((f64::MAX, f64::MIN), |(l, h), v| (l.min(v), h.max(v)));
    if low > high {
        return 1.0..10.0;
    }
    (low / 1.5)..(high * 1.5)
}

/// Axis marks for a log axis: 1, 2, 5, 10, 20, 50, ... inside `range`.
fn one_two_five(range: &std::ops::Range<f64>) -> Vec<f64> {
    let mut marks = Vec::new();
    if !(range.start > 0.0 && range.end.is_finite()) {
        return marks;
    }
    let mut decade = 10f64.powf(range.start.log10().floor());
    // Bounded: a positive range spans at most ~650 decades of f64.
    while decade <= range.end && marks.len() < 2_000 {
        for step in [1.0, 2.0, 5.0] {
            let mark = decade * step;
            if range.contains(&mark) {
                marks.push(mark);
            }
        }
        decade *= 10.0;
    }
    marks
}

/// Numbers for axis labels: no more digits than a reader needs (`0.5`,
/// `2`, `50`, `1200`).
fn short(v: f64) -> String {
    let text = if v >= 10.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

/// Two panels side by side on a white image, drawn by `draw` (left, right)
/// and written to `path` as a PNG.
fn draw_png(
    path: &Path,
    draw: impl FnOnce(&Panel<'_>, &Panel<'_>) -> Result<(), String>,
) -> Result<(), String> {
    let (width, height) = (2 * PANEL_WIDTH_PX, PANEL_HEIGHT_PX);
    let mut rgb = vec![0u8; 3 * width as usize * height as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let panels = root.split_evenly((1, 2));
        draw(&panels[0], &panels[1])?;
        root.present().map_err(draw_error)?;
    }
    write_png(path, &rgb, width, height)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

type Panel<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// PNG encoding with the `png` crate rather than plotters' `image`-based
/// encoder: the same file, fewer crates to build.
fn write_png(path: &Path, rgb: &[u8], width: u32, height: u32) -> Result<(), String> {
    let file = std::fs::File::create(path).map_err(|e| e.to_string())?;
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(|e| e.to_string())?;
    writer.write_image_data(rgb).map_err(|e| e.to_string())?;
    writer.finish().map_err(|e| e.to_string())
}

fn draw_throughput(path: &Path, rows: &[Row], systems: &Systems) -> Result<(), String> {
    draw_png(path, |left, right| {
        throughput_panel(left, Kind::Set, rows, systems)?;
        throughput_panel(right, Kind::Get, rows, systems)
    })
}

fn throughput_panel(
    panel: &Panel<'_>,
    kind: Kind,
    rows: &[Row],
    systems: &Systems,
) -> Result<(), String> {
    let x_range = log_range(rows.iter().map(|r| f64::from(r.clients)));
    let mut x_marks: Vec<f64> = rows.iter().map(|r| f64::from(r.clients)).collect();
    x_marks.sort_by(f64::total_cmp);
    x_marks.dedup();
    let y_range = log_range(rows.iter().map(|r| r.ops_per_s));
    let y_marks = one_two_five(&y_range);
    let mut chart = ChartBuilder::on(panel)
        .caption(
            format!("{} throughput (pipeline 1)", kind.name()),
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d(
            x_range.log_scale().with_key_points(x_marks),
            y_range.log_scale().with_key_points(y_marks),
        )
        .map_err(draw_error)?;
    chart
        .configure_mesh()
        .x_desc("clients")
        .y_desc("ops/s")
        .x_label_formatter(&|v| short(*v))
        .y_label_formatter(&|v| short(*v))
        .label_style(("sans-serif", 14))
        .max_light_lines(0)
        .draw()
        .map_err(draw_error)?;
    for system in &systems.names {
        let mut points: Vec<(f64, f64)> = rows
            .iter()
            .filter(|r| r.kind == kind && &r.system == system)
            .map(|r| (f64::from(r.clients), r.ops_per_s))
            .collect();
        if points.is_empty() {
            continue;
        }
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        let colour = systems.colour(system);
        chart
            .draw_series(LineSeries::new(points, colour.stroke_width(2)).point_size(4))
            .map_err(draw_error)?
            .label(system.as_str())
            .legend(legend_line(colour));
    }
    draw_legend(&mut chart, SeriesLabelPosition::LowerRight)
}

fn draw_cdfs(path: &Path, cdfs: &[Cdf], systems: &Systems, clients: u32) -> Result<(), String> {
    draw_png(path, |left, right| {
        cdf_panel(left, Kind::Set, cdfs, systems, clients)?;
        cdf_panel(right, Kind::Get, cdfs, systems, clients)
    })
}

fn cdf_panel(
    panel: &Panel<'_>,
    kind: Kind,
    cdfs: &[Cdf],
    systems: &Systems,
    clients: u32,
) -> Result<(), String> {
    // Systems in the same order (and colours) as in the throughput plot.
    let mut shown: Vec<&Cdf> = cdfs.iter().filter(|c| c.kind == kind).collect();
    shown.sort_by_key(|c| systems.index(&c.system));
    let x_range = log_range(shown.iter().flat_map(|c| c.points.iter().map(|p| p.0)));
    let x_marks = one_two_five(&x_range);
    let mut chart = ChartBuilder::on(panel)
        .caption(
            format!("{} latency CDF, {clients} clients", kind.name()),
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(60)
        .build_cartesian_2d(x_range.log_scale().with_key_points(x_marks), 0.0..1.0)
        .map_err(draw_error)?;
    chart
        .configure_mesh()
        .x_desc("latency (ms)")
        .y_desc("fraction of requests")
        .x_label_formatter(&|v| short(*v))
        .y_label_formatter(&|v| format!("{v:.1}"))
        .label_style(("sans-serif", 14))
        .max_light_lines(0)
        .draw()
        .map_err(draw_error)?;
    for cdf in shown {
        let colour = systems.colour(&cdf.system);
        chart
            .draw_series(LineSeries::new(
                cdf.points.iter().copied(),
                colour.stroke_width(2),
            ))
            .map_err(draw_error)?
            .label(cdf.system.as_str())
            .legend(legend_line(colour));
    }
    draw_legend(&mut chart, SeriesLabelPosition::LowerRight)
}

/// A series' mark in the legend: a short line in its colour.
fn legend_line(colour: RGBColor) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(2))
}

fn draw_legend<'a, X, Y>(
    chart: &mut ChartContext<'a, BitMapBackend<'a>, Cartesian2d<X, Y>>,
    position: SeriesLabelPosition,
) -> Result<(), String>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    chart
        .configure_series_labels()
        .position(position)
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(draw_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_system_is_the_label_up_to_the_first_slash() {
        assert_eq!(system_of("synod/set-c50"), "synod");
        assert_eq!(system_of("etcd/get-c1/x"), "etcd");
        assert_eq!(system_of("plain"), "plain");
        assert_eq!(system_of(""), "run");
        assert_eq!(system_of("/set-c1"), "/set-c1");
    }

    #[test]
    fn log_axis_marks_are_one_two_five() {
        assert_eq!(one_two_five(&(0.3..25.0)), [0.5, 1.0, 2.0, 5.0, 10.0, 20.0]);
        assert_eq!(one_two_five(&(600.0..1500.0)), [1000.0]);
        assert_eq!(one_two_five(&(0.0..1.0)), Vec::<f64>::new());
    }

    #[test]
    fn axis_labels_are_short() {
        let labels: Vec<String> = [0.05, 0.5, 1.0, 2.5, 10.0, 1234.4].map(short).to_vec();
        assert_eq!(labels, ["0.05", "0.5", "1", "2.5", "10", "1234"]);
    }

    #[test]
    fn only_pure_set_and_get_runs_are_plotted() {
        assert_eq!(Kind::of(0.0), Some(Kind::Set));
        assert_eq!(Kind::of(1.0), Some(Kind::Get));
        assert_eq!(Kind::of(0.3), None);
    }
}
