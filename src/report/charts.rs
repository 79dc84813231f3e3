//! Charts of a run, drawn with plotters as SVG strings. Text is SVG text
//! (rendered by the viewer), so drawing needs no font on the machine.
//!
//! Every data point of an SVG chart carries its value as an SVG `<title>`
//! (a transparent circle over the point), which a browser shows on hover:
//! no script, and the page stays one file. Each chart also records the
//! ranges of its axes ([`Axes`]), so tests can hold them against the data.
//!
//! Colours are fixed per metric and per position of an entry point or
//! account in name order, so the same thing has the same colour in every
//! chart of a report.

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::metrics::Measured;
use crate::series::SeriesData;
use crate::summary::Summary;

/// One chart: a file stem, a title, and the picture as SVG and PNG.
#[derive(Debug, Clone)]
pub struct Chart {
    /// File name without the extension.
    pub name: String,
    /// What it shows.
    pub title: String,
    /// The SVG document.
    pub svg: String,
    /// The same chart as a PNG image (text drawn with the bundled DejaVu Sans).
    pub png: Vec<u8>,
    /// The axes of each panel, as drawn.
    pub axes: Vec<Axes>,
}

/// The ranges of one panel's axes.
#[derive(Debug, Clone, PartialEq)]
pub struct Axes {
    /// The panel (its caption, or the chart's name for one-panel charts).
    pub panel: String,
    /// x from, to (in the axis's display unit).
    pub x: (f64, f64),
    /// y from, to (in the axis's display unit).
    pub y: (f64, f64),
    /// The y axis is logarithmic.
    pub y_log: bool,
    /// Multiply a data value by this to get the axis's display unit (1e-3
    /// for ms shown in s); 1 when the axis shows the data's own unit.
    pub y_scale: f64,
}

/// What the SVG pass of a drawing records: axes and hover labels.
#[derive(Default)]
struct Record {
    axes: Vec<Axes>,
    hovers: Vec<(i32, i32, String)>,
}

thread_local! {
    static RECORD: std::cell::RefCell<Option<Record>> = const { std::cell::RefCell::new(None) };
}

/// Note the axes of a panel being drawn (recorded during the SVG pass).
pub fn note_axes(panel: &str, x: (f64, f64), y: (f64, f64), y_log: bool, y_scale: f64) {
    RECORD.with(|r| {
        if let Some(r) = r.borrow_mut().as_mut() {
            r.axes.push(Axes { panel: panel.to_owned(), x, y, y_log, y_scale });
        }
    });
}

/// Give the point at `at` (chart coordinates) a hover label.
pub fn hover<DB: DrawingBackend, CT: plotters::coord::CoordTranslate>(
    chart: &ChartContext<'_, DB, CT>,
    at: CT::From,
    text: String,
) {
    RECORD.with(|r| {
        if let Some(r) = r.borrow_mut().as_mut() {
            let (x, y) = chart.as_coord_spec().translate(&at);
            r.hovers.push((x, y, text));
        }
    });
}

/// The hover layer: a transparent circle with a `<title>` per point, last
/// in the document so it lies over everything drawn.
fn hover_layer(hovers: &[(i32, i32, String)]) -> String {
    let mut g = String::from(r#"<g class="hover" fill="transparent" pointer-events="all">"#);
    for (x, y, text) in hovers {
        let t = text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
        g.push_str(&format!(r#"<circle cx="{x}" cy="{y}" r="6"><title>{t}</title></circle>"#));
    }
    g.push_str("</g>\n");
    g
}

/// Default chart width [px].
pub const W: u32 = 900;
/// Default chart height [px].
pub const H: u32 = 420;
/// The font family of every chart.
pub const FONT: &str = "sans-serif";

/// The colour of a latency metric.
pub fn metric_colour(name: &str) -> RGBColor {
    match name.rsplit('.').next().unwrap_or(name) {
        "queue_wait" => RGBColor(31, 119, 180),
        "first_response" => RGBColor(255, 127, 14),
        "reply" => RGBColor(44, 160, 44),
        "session" => RGBColor(148, 103, 189),
        "abandon_wait" => RGBColor(214, 39, 40),
        _ => RGBColor(127, 127, 127),
    }
}

/// The colour of the i-th entry point or account (in name order).
pub fn palette(i: usize) -> RGBColor {
    const P: [RGBColor; 8] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(23, 190, 207),
    ];
    P[i % P.len()]
}

/// A chart, or why it could not be drawn.
pub type DrawResult<T> = Result<T, String>;

/// A plotters error as a message.
pub fn err<E: std::fmt::Debug>(e: E) -> String {
    format!("drawing a chart failed: {e:?}")
}

/// A time unit that keeps axis numbers readable: (ms per unit, label).
fn time_unit(max_ms: f64) -> (f64, &'static str) {
    if max_ms < 2_000.0 {
        (1.0, "ms")
    } else if max_ms < 180_000.0 {
        (1_000.0, "s")
    } else {
        (60_000.0, "min")
    }
}

/// A picture that can be drawn on any plotters backend, so one
/// description gives both the SVG and the PNG.
pub trait Drawable {
    /// Size in pixels.
    fn size(&self) -> (u32, u32) {
        (W, H)
    }
    /// Draw on `root` (already white).
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<()>;
}

/// Draw `d` as SVG and as PNG.
pub fn render<D: Drawable>(d: &D, name: String, title: String) -> DrawResult<Chart> {
    register_fonts()?;
    let size = d.size();
    let mut svg = String::new();
    RECORD.with(|r| *r.borrow_mut() = Some(Record::default()));
    let drawn = (|| {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        d.draw(&root)?;
        root.present().map_err(err)
    })();
    let record = RECORD.with(|r| r.borrow_mut().take()).unwrap_or_default();
    drawn?;
    if let Some(end) = svg.rfind("</svg>") {
        svg.insert_str(end, &hover_layer(&record.hovers));
    }
    let mut rgb = vec![0u8; size.0 as usize * size.1 as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, size).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        d.draw(&root)?;
        root.present().map_err(err)?;
    }
    Ok(Chart { name, title, svg, png: encode_png(&rgb, size)?, axes: record.axes })
}

/// What a chart draws; one `draw` serves every backend.
enum Kind<'a> {
    Spectrum(Vec<&'a str>),
    Histogram(&'a str),
    FairnessBars,
    AssignmentHistogram,
    OverTime,
}

struct RunChart<'a> {
    kind: Kind<'a>,
    run: &'a Measured,
}

impl Drawable for RunChart<'_> {
    fn size(&self) -> (u32, u32) {
        match self.kind {
            Kind::OverTime => (W, 4 * 230),
            _ => (W, H),
        }
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<()> {
        let run = self.run;
        let name = &run.summary.scenario.name;
        match &self.kind {
            Kind::Spectrum(keys) => spectrum(root, run, keys, name),
            Kind::Histogram(key) => histogram(root, &run.histograms[*key], key, name),
            Kind::FairnessBars => fairness_bars(root, &run.summary),
            Kind::AssignmentHistogram => assignment_histogram(root, &run.summary),
            Kind::OverTime => over_time(root, &run.series, name),
        }
    }
}

impl<'a> Kind<'a> {
    fn render(self, run: &'a Measured, name: String, title: String) -> DrawResult<Chart> {
        render(&RunChart { kind: self, run }, name, title)
    }
}

/// Text in bitmaps needs a font; bundling one keeps PNG output the same on
/// a machine with no fonts installed.
fn register_fonts() -> DrawResult<()> {
    static ONCE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        for (style, bytes) in [
            (FontStyle::Normal, dejavu::sans::regular()),
            (FontStyle::Bold, dejavu::sans::bold()),
            (FontStyle::Italic, dejavu::sans::oblique()),
            (FontStyle::Oblique, dejavu::sans::oblique()),
        ] {
            plotters::style::register_font(FONT, style, bytes)
                .map_err(|_| "the bundled font is invalid".to_owned())?;
        }
        Ok(())
    })
    .clone()
}

fn encode_png(rgb: &[u8], (w, h): (u32, u32)) -> DrawResult<Vec<u8>> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, w, h);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(err)?;
    writer.write_image_data(rgb).map_err(err)?;
    writer.finish().map_err(err)?;
    Ok(out)
}

/// Draw the legend of `chart` at `pos`, the same way on every chart.
pub fn legend<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    pos: SeriesLabelPosition,
) -> DrawResult<()> {
    chart
        .configure_series_labels()
        .position(pos)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(err)
}

/// Every chart of a run.
pub fn render_all(run: &Measured) -> DrawResult<Vec<Chart>> {
    let name = &run.summary.scenario.name;
    let mut charts = Vec::new();
    let latencies: Vec<&str> = ["queue_wait", "first_response", "reply"]
        .into_iter()
        .filter(|k| run.histograms.get(*k).is_some_and(|h| !h.is_empty()))
        .collect();
    if !latencies.is_empty() {
        let title = format!("Latency by percentile — {name}");
        charts.push(Kind::Spectrum(latencies).render(run, "latency-spectrum".into(), title)?);
    }
    let http: Vec<&str> = run
        .histograms
        .iter()
        // long-polls wait by design, and one-off setup calls say nothing
        // about load: the chart shows the endpoints that carry the traffic
        .filter(|(k, h)| k.starts_with("http.") && !k.ends_with("_pull") && h.len() >= 100)
        .map(|(k, _)| k.as_str())
        .collect();
    if !http.is_empty() {
        let title = format!("HTTP latency by percentile — {name}");
        charts.push(Kind::Spectrum(http).render(run, "http-spectrum".into(), title)?);
    }
    for key in ["queue_wait", "first_response", "reply", "session", "abandon_wait"] {
        if run.histograms.get(key).is_some_and(|h| !h.is_empty()) {
            let title = format!("Distribution of {} — {name}", key.replace('_', " "));
            charts.push(Kind::Histogram(key).render(run, format!("histogram-{key}"), title)?);
        }
    }
    if run.summary.agents.iter().any(|a| a.online_s > 0.0) {
        let title = format!("Sessions per agent — {name}");
        charts.push(Kind::FairnessBars.render(run, "fairness-agents".into(), title)?);
        let title = format!("How many agents got how many sessions — {name}");
        charts.push(Kind::AssignmentHistogram.render(run, "fairness-histogram".into(), title)?);
    }
    if !run.series.answered.is_empty() {
        charts.push(Kind::OverTime.render(run, "over-time".into(), format!("Over time — {name}"))?);
    }
    Ok(charts)
}

/// x = log10(1 / (1 − q)): 1 is 90 %, 2 is 99 %, …
fn percentile_label(x: f64) -> String {
    let p = 100.0 * (1.0 - 10f64.powf(-x));
    let s = format!("{p:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}%")
}

fn spectrum<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    run: &Measured,
    keys: &[&str],
    name: &str,
) -> DrawResult<()> {
    let count = keys.iter().map(|k| run.histograms[*k].len()).max().unwrap_or(1) as f64;
    // whole decades, so that the axis labels fall on 90 %, 99 %, 99.9 %, …
    let x_max = count.log10().floor().clamp(1.0, 5.0);
    let max_ms = keys.iter().map(|k| run.histograms[*k].max() as f64 / 1e3).fold(0.0, f64::max);
    let (div, unit) = time_unit(max_ms);
    let mut chart = ChartBuilder::on(root)
        .caption(
            format!(
                "{}atency by percentile — {name}",
                if keys.iter().any(|k| k.starts_with("http.")) { "HTTP l" } else { "L" }
            ),
            (FONT, 20),
        )
        .margin(12)
        .margin_right(36)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max, 0.0..(max_ms / div * 1.05).max(1e-9))
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc(format!("latency [{unit}]"))
        .x_labels(x_max as usize + 1)
        .x_label_formatter(&|x| percentile_label(*x))
        .draw()
        .map_err(err)?;
    for key in keys {
        let h = &run.histograms[*key];
        if h.is_empty() {
            continue;
        }
        let colour = if key.starts_with("http.") {
            palette(keys.iter().position(|k| k == key).unwrap_or(0))
        } else {
            metric_colour(key)
        };
        let points = (0..=((x_max / 0.02) as usize)).map(|i| {
            let x = i as f64 * 0.02;
            let q = 1.0 - 10f64.powf(-x);
            (x, h.value_at_quantile(q) as f64 / 1e3 / div)
        });
        chart
            .draw_series(LineSeries::new(points, colour.stroke_width(2)))
            .map_err(err)?
            .label(key.replace('_', " "))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2)));
    }
    legend(&mut chart, SeriesLabelPosition::UpperLeft)
}

fn histogram<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    h: &hdrhistogram::Histogram<u64>,
    key: &str,
    name: &str,
) -> DrawResult<()> {
    // 60 bins up to the 99.9th percentile; the rest is one overflow bin
    let top_ms = (h.value_at_quantile(0.999) as f64 / 1e3).max(1e-3);
    let (div, unit) = time_unit(top_ms);
    let bins = 60usize;
    let width = top_ms / bins as f64;
    let mut counts = vec![0u64; bins + 1];
    for v in h.iter_recorded() {
        let ms = v.value_iterated_to() as f64 / 1e3;
        let i = ((ms / width) as usize).min(bins);
        counts[i] += v.count_at_value();
    }
    let y_max = counts.iter().copied().max().unwrap_or(1).max(1) as f64;
    let colour = metric_colour(key);
    let mut chart = ChartBuilder::on(root)
        .caption(format!("Distribution of {} — {name}", key.replace('_', " ")), (FONT, 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..(top_ms / div) * (1.0 + 1.0 / bins as f64), 0.0..y_max * 1.05)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(format!("{} [{unit}] (last bar: beyond p99.9)", key.replace('_', " ")))
        .y_desc("sessions or messages")
        .draw()
        .map_err(err)?;
    chart
        .draw_series(counts.iter().enumerate().map(|(i, &c)| {
            let x0 = i as f64 * width / div;
            let style = if i == bins { colour.mix(0.4).filled() } else { colour.filled() };
            Rectangle::new([(x0, 0.0), (x0 + width / div * 0.9, c as f64)], style)
        }))
        .map_err(err)?;
    Ok(())
}

fn fairness_bars<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, s: &Summary) -> DrawResult<()> {
    let accounts: Vec<&String> = s.fairness.keys().collect();
    // sorted bars, grouped by account
    let mut bars: Vec<(usize, f64, f64)> = Vec::new(); // (account, sessions, ideal)
    for (ai, account) in accounts.iter().enumerate() {
        let agents: Vec<_> = s.agents.iter().filter(|a| &&a.account == account && a.online_s > 0.0).collect();
        // The cap-limited ideal: sessions in proportion to slot-time online
        // (online time × 接待上限), what a perfectly even router would give.
        let total: f64 = agents.iter().map(|a| a.sessions as f64).sum();
        let slot_time = |a: &&crate::summary::AgentSummary| a.online_s * f64::from(a.max_concurrent);
        let all_slots: f64 = agents.iter().map(slot_time).sum();
        let mut group: Vec<(usize, f64, f64)> = agents
            .iter()
            .map(|a| {
                (ai, a.sessions as f64, if all_slots > 0.0 { total * slot_time(a) / all_slots } else { 0.0 })
            })
            .collect();
        group.sort_by(|a, b| b.1.total_cmp(&a.1));
        bars.extend(group);
    }
    let y_max = bars.iter().map(|b| b.1.max(b.2)).fold(1.0, f64::max) * 1.1;
    let n = bars.len().max(1);
    let mut chart = ChartBuilder::on(root)
        .caption(format!("Sessions per agent (sorted, by account) — {}", s.scenario.name), (FONT, 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..n as f64, 0.0..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_desc("agents, most sessions first")
        .y_desc("sessions")
        .x_labels(0)
        .draw()
        .map_err(err)?;
    for (ai, account) in accounts.iter().enumerate() {
        let colour = palette(ai);
        let f = &s.fairness[*account];
        let label = format!(
            "{account}: Jain {} · Gini {}",
            f.jain.map_or("—".into(), |v| format!("{v:.3}")),
            f.gini.map_or("—".into(), |v| format!("{v:.3}"))
        );
        chart
            .draw_series(bars.iter().enumerate().filter(|(_, b)| b.0 == ai).map(|(i, b)| {
                Rectangle::new([(i as f64 + 0.1, 0.0), (i as f64 + 0.9, b.1)], colour.filled())
            }))
            .map_err(err)?
            .label(label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.filled()));
        let idx: Vec<usize> = (0..bars.len()).filter(|&i| bars[i].0 == ai).collect();
        if let (Some(&first), Some(&last)) = (idx.first(), idx.last()) {
            let mean = idx.iter().map(|&i| bars[i].1).sum::<f64>() / idx.len() as f64;
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(first as f64, mean), (last as f64 + 1.0, mean)],
                    BLACK.stroke_width(2),
                )))
                .map_err(err)?;
        }
    }
    chart
        .draw_series(
            bars.iter().enumerate().map(|(i, b)| Circle::new((i as f64 + 0.5, b.2), 3, BLACK.filled())),
        )
        .map_err(err)?
        .label("cap-limited ideal (share of slot-time online)")
        .legend(|(x, y)| Circle::new((x + 6, y), 3, BLACK.filled()));
    chart
        .draw_series(std::iter::once(PathElement::new(vec![(0.0, -1.0), (0.0, -1.0)], BLACK.stroke_width(2))))
        .map_err(err)?
        .label("mean of the account")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK.stroke_width(2)));
    legend(&mut chart, SeriesLabelPosition::UpperRight)
}

fn assignment_histogram<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, s: &Summary) -> DrawResult<()> {
    let max_sessions =
        s.fairness.values().flat_map(|f| f.histogram.iter().map(|b| b.sessions)).max().unwrap_or(0);
    let bins = 30u64;
    let width = (max_sessions / bins + 1).max(1);
    let nbins = (max_sessions / width + 1) as usize;
    let mut counts: Vec<Vec<u64>> = Vec::new();
    for f in s.fairness.values() {
        let mut c = vec![0u64; nbins];
        for b in &f.histogram {
            c[(b.sessions / width) as usize] += b.agents;
        }
        counts.push(c);
    }
    let y_max = counts.iter().flat_map(|c| c.iter()).copied().max().unwrap_or(1).max(1) as f64;
    let groups = counts.len().max(1) as f64;
    let mut chart = ChartBuilder::on(root)
        .caption(format!("How many agents got how many sessions — {}", s.scenario.name), (FONT, 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..(nbins as u64 * width) as f64, 0.0..y_max * 1.15)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(format!("sessions per agent (bins of {width})"))
        .y_desc("agents")
        .draw()
        .map_err(err)?;
    for (ai, (account, f)) in s.fairness.iter().enumerate() {
        let colour = palette(ai);
        let label = format!(
            "{account}: Jain {} · Gini {}",
            f.jain.map_or("—".into(), |v| format!("{v:.3}")),
            f.gini.map_or("—".into(), |v| format!("{v:.3}"))
        );
        let w = width as f64 / groups;
        chart
            .draw_series(counts[ai].iter().enumerate().filter(|(_, c)| **c > 0).map(|(i, &c)| {
                let x0 = (i as u64 * width) as f64 + ai as f64 * w;
                Rectangle::new([(x0, 0.0), (x0 + w * 0.9, c as f64)], colour.filled())
            }))
            .map_err(err)?
            .label(label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.filled()));
    }
    legend(&mut chart, SeriesLabelPosition::UpperRight)
}

/// Line plot of named series against interval start times.
fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    y_desc: &str,
    series: &[(String, Vec<f64>, RGBColor)],
    data: &SeriesData,
) -> DrawResult<()> {
    let n = series.iter().map(|s| s.1.len()).max().unwrap_or(0);
    let (t_div, t_unit) = if n as f64 * data.interval_s > 2.0 * 86_400.0 {
        (86_400.0, "d")
    } else if n as f64 * data.interval_s > 3.0 * 3600.0 {
        (3600.0, "h")
    } else {
        (60.0, "min")
    };
    let x_max = (n as f64 * data.interval_s / t_div).max(1e-9);
    let y_max = series.iter().flat_map(|s| s.1.iter()).copied().fold(0.0, f64::max).max(1e-9) * 1.1;
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, 16))
        .margin(8)
        .x_label_area_size(32)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)
        .map_err(err)?;
    chart.configure_mesh().x_desc(format!("scenario time [{t_unit}]")).y_desc(y_desc).draw().map_err(err)?;
    if data.warmup_s > 0.0 {
        let w = (data.warmup_s / t_div).min(x_max);
        chart
            .draw_series(std::iter::once(Rectangle::new([(0.0, 0.0), (w, y_max)], BLACK.mix(0.07).filled())))
            .map_err(err)?
            .label("warm-up (not counted)")
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], BLACK.mix(0.15).filled()));
    }
    for (label, values, colour) in series {
        let colour = *colour;
        let points = values.iter().enumerate().map(|(i, v)| ((i as f64 + 0.5) * data.interval_s / t_div, *v));
        chart
            .draw_series(LineSeries::new(points, colour.stroke_width(2)))
            .map_err(err)?
            .label(label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2)));
    }
    legend(&mut chart, SeriesLabelPosition::UpperRight)
}

fn over_time<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    d: &SeriesData,
    name: &str,
) -> DrawResult<()> {
    let areas = root.split_evenly((4, 1));
    let per_min = 60.0 / d.interval_s;
    let arrivals: Vec<(String, Vec<f64>, RGBColor)> = d
        .arrivals
        .iter()
        .enumerate()
        .map(|(i, (k, v))| (k.clone(), v.iter().map(|c| *c as f64 * per_min).collect(), palette(i)))
        .collect();
    panel(&areas[0], &format!("Arrivals per entry point — {name}"), "arrivals / min", &arrivals, d)?;
    let queue: Vec<_> =
        d.queue_len.iter().enumerate().map(|(i, (k, v))| (k.clone(), v.clone(), palette(i))).collect();
    panel(&areas[1], "Waiting pool (mean length per interval)", "sessions waiting", &queue, d)?;
    let mut agents = Vec::new();
    for (i, (k, v)) in d.agents_online.iter().enumerate() {
        agents.push((format!("{k} online"), v.clone(), palette(i)));
        if let Some(b) = d.agents_busy.get(k) {
            agents.push((format!("{k} busy"), b.clone(), palette(i).mix(0.6).to_rgba().rgb_colour()));
        }
    }
    panel(&areas[2], "Agents online and busy (mean per interval)", "agents", &agents, d)?;
    let p95: Vec<f64> = d.queue_wait_p95_ms.iter().map(|v| v.unwrap_or(0.0) / 1e3).collect();
    panel(
        &areas[3],
        "p95 queue wait of sessions assigned in each interval",
        "p95 queue wait [s]",
        &[("queue wait p95".into(), p95, metric_colour("queue_wait"))],
        d,
    )
}

trait RgbOf {
    fn rgb_colour(&self) -> RGBColor;
}

impl RgbOf for RGBAColor {
    /// The colour blended over white (SVG strokes here are opaque).
    fn rgb_colour(&self) -> RGBColor {
        let (r, g, b) = self.rgb();
        let a = self.alpha();
        let blend = |c: u8| (c as f64 * a + 255.0 * (1.0 - a)).round() as u8;
        RGBColor(blend(r), blend(g), blend(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_labels() {
        assert_eq!(percentile_label(1.0), "90%");
        assert_eq!(percentile_label(3.0), "99.9%");
        assert_eq!(percentile_label(2f64.log10()), "50%");
        assert_eq!(percentile_label(0.0), "0%");
    }
}
