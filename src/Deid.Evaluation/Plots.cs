using SkiaSharp;

namespace Deid.Evaluation;

/// <summary>One line of a chart; null Y values leave a gap (undefined metric for that frame).</summary>
public sealed record Series(string Name, IReadOnlyList<(double X, double? Y)> Points, ScottPlot.Color Color);

/// <summary>A labelled source|output pair for the contact sheet (PNG bytes, already downscaled).</summary>
public sealed record SheetItem(string Label, byte[] SourcePng, byte[] OutputPng);

/// <summary>PNG charts (ScottPlot) and the contact sheet (SkiaSharp), so the report needs no plotting runtime or network.</summary>
public static class Plots
{
    public static readonly ScottPlot.Color Blue = ScottPlot.Color.FromHex("#1f77b4");
    public static readonly ScottPlot.Color DarkBlue = ScottPlot.Color.FromHex("#0b3d66");
    public static readonly ScottPlot.Color Orange = ScottPlot.Color.FromHex("#ff7f0e");
    public static readonly ScottPlot.Color Brown = ScottPlot.Color.FromHex("#8c564b");
    public static readonly ScottPlot.Color Green = ScottPlot.Color.FromHex("#2ca02c");
    public static readonly ScottPlot.Color DarkGreen = ScottPlot.Color.FromHex("#0f500f");
    public static readonly ScottPlot.Color Red = ScottPlot.Color.FromHex("#d62728");
    public static readonly ScottPlot.Color Purple = ScottPlot.Color.FromHex("#9467bd");

    // The fontconfig-free native SkiaSharp has no font manager: a typeface found by family name draws nothing, so
    // both the charts and the contact sheet use a TTF loaded by path.
    private static readonly string? FontFile = FindFontFile();
    private const string FontName = "Deid Sans";
    private static readonly SKTypeface Typeface = FontFile is null ? SKTypeface.Default : SKTypeface.FromFile(FontFile) ?? SKTypeface.Default;
    private static readonly Lazy<bool> ChartFont = new(() =>
    {
        if (FontFile is null) return false;
        ScottPlot.Fonts.AddFontFile(FontName, FontFile);
        // Titles and axis labels are bold: without a bold face registered they fall back to another font.
        var bold = Path.Combine(Path.GetDirectoryName(FontFile)!, Path.GetFileNameWithoutExtension(FontFile) + "-Bold.ttf");
        ScottPlot.Fonts.AddFontFile(FontName, File.Exists(bold) ? bold : FontFile, bold: true);
        ScottPlot.Fonts.Default = FontName;
        return true;
    }, LazyThreadSafetyMode.ExecutionAndPublication);

    private static string? FindFontFile()
    {
        string[] candidates =
        [
            Environment.GetEnvironmentVariable("DEID_FONT") ?? "",
            "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
            "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
            "/usr/share/fonts/TTF/DejaVuSans.ttf",
            "/usr/share/fonts/dejavu/DejaVuSans.ttf",
            "/System/Library/Fonts/Supplemental/Arial.ttf",
            "C:/Windows/Fonts/arial.ttf",
        ];
        return candidates.FirstOrDefault(c => c.Length > 0 && File.Exists(c));
    }

    public static void LineChart(string path, string title, string xLabel, IReadOnlyList<Series> series,
        double? threshold = null, string? thresholdLabel = null, double? yMin = null, double? yMax = null, int width = 960, int height = 320)
    {
        var plot = BuildLineChart(title, xLabel, series, threshold, thresholdLabel, yMin, yMax);
        plot.SavePng(path, width, height);
    }

    /// <summary>The chart <see cref="LineChart"/> saves; ticks are ScottPlot's (round values at 1, 2 or 5 × 10^k steps).</summary>
    public static ScottPlot.Plot BuildLineChart(string title, string xLabel, IReadOnlyList<Series> series,
        double? threshold = null, string? thresholdLabel = null, double? yMin = null, double? yMax = null)
    {
        _ = ChartFont.Value;
        var plot = new ScottPlot.Plot();
        plot.Title(title);
        plot.XLabel(xLabel);
        foreach (var s in series)
        {
            // One scatter per run of defined values: an undefined frame is a gap, not a line drawn across it.
            var labelled = false;
            foreach (var run in Runs(s.Points))
            {
                var line = plot.Add.Scatter(run.Select(p => p.X).ToArray(), run.Select(p => p.Y).ToArray(), s.Color);
                line.LineWidth = 1.6f;
                line.MarkerSize = s.Points.Count <= 60 ? 4 : 0;
                if (!labelled) { line.LegendText = s.Name; labelled = true; }
            }
            if (!labelled)
            {
                // No defined value at all: the series still appears in the legend, so its absence is visible.
                var empty = plot.Add.Scatter(Array.Empty<double>(), Array.Empty<double>(), s.Color);
                empty.LegendText = s.Name + " (none)";
            }
        }
        if (threshold is { } t)
        {
            var line = plot.Add.HorizontalLine(t, 1.5f, Red, ScottPlot.LinePattern.Dashed);
            line.LegendText = thresholdLabel ?? $"threshold {t:0.###}";
        }
        if (yMin is not null || yMax is not null)
        {
            plot.Axes.AutoScale();
            var limits = plot.Axes.GetLimits();
            plot.Axes.SetLimitsY(yMin ?? limits.Bottom, yMax ?? limits.Top);
        }
        plot.ShowLegend(ScottPlot.Edge.Right);
        return plot;
    }

    private static IEnumerable<List<(double X, double Y)>> Runs(IReadOnlyList<(double X, double? Y)> points)
    {
        var run = new List<(double, double)>();
        foreach (var (x, y) in points)
        {
            if (y is { } v && double.IsFinite(v) && double.IsFinite(x)) { run.Add((x, v)); continue; }
            if (run.Count > 0) { yield return run; run = []; }
        }
        if (run.Count > 0) yield return run;
    }

    /// <summary>Rows of source | output thumbnails, labelled with the frame index and time.</summary>
    public static void ContactSheet(string path, IReadOnlyList<SheetItem> items, int cellHeight = 160)
    {
        if (items.Count == 0) throw new ArgumentException("no frames for the contact sheet", nameof(items));
        var decoded = items.Select(i => (i.Label, Src: SKBitmap.Decode(i.SourcePng), Out: SKBitmap.Decode(i.OutputPng))).ToList();
        try
        {
            int Cell(SKBitmap? b) => b is null || b.Height == 0 ? cellHeight : (int)Math.Round(b.Width * (double)cellHeight / b.Height);
            var cellW = decoded.Max(d => Math.Max(Cell(d.Src), Cell(d.Out)));
            const int labelH = 20, gap = 6, header = 24;
            var cols = 2;
            var perRow = Math.Max(1, Math.Min(items.Count, 1600 / (cols * cellW + 3 * gap)));
            var rows = (items.Count + perRow - 1) / perRow;
            var width = perRow * (cols * cellW + 3 * gap) + gap;
            var height = header + rows * (cellHeight + labelH + gap) + gap;
            using var surface = SKSurface.Create(new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Premul));
            var c = surface.Canvas;
            c.Clear(SKColors.White);
            using var font = new SKFont(Typeface, 13);
            using var text = new SKPaint { Color = SKColors.Black, IsAntialias = true };
            c.DrawText("source | output", gap, 17, SKTextAlign.Left, font, text);
            using var sampling = new SKPaint { IsAntialias = true };
            for (var i = 0; i < decoded.Count; i++)
            {
                var (label, src, outp) = decoded[i];
                var x = gap + (i % perRow) * (cols * cellW + 3 * gap);
                var y = header + (i / perRow) * (cellHeight + labelH + gap);
                c.DrawText(label, x, y + 14, SKTextAlign.Left, font, text);
                foreach (var (bmp, k) in new[] { (src, 0), (outp, 1) })
                {
                    if (bmp is null) continue;
                    var w = Cell(bmp);
                    var dest = SKRect.Create(x + k * (cellW + gap), y + labelH, w, cellHeight);
                    using var img = SKImage.FromBitmap(bmp);
                    c.DrawImage(img, dest, new SKSamplingOptions(SKFilterMode.Linear), sampling);
                }
            }
            Save(surface, path);
        }
        finally
        {
            foreach (var d in decoded) { d.Src?.Dispose(); d.Out?.Dispose(); }
        }
    }

    private static void Save(SKSurface surface, string path)
    {
        using var image = surface.Snapshot();
        using var data = image.Encode(SKEncodedImageFormat.Png, 100);
        using var fs = File.Create(path);
        data.SaveTo(fs);
    }
}
