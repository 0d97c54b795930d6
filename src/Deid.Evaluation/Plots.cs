using SkiaSharp;

namespace Deid.Evaluation;

/// <summary>One line of a chart; null Y values leave a gap (undefined metric for that frame).</summary>
public sealed record Series(string Name, IReadOnlyList<(double X, double? Y)> Points, SKColor Color);

/// <summary>A labelled source|output pair for the contact sheet (PNG bytes, already downscaled).</summary>
public sealed record SheetItem(string Label, byte[] SourcePng, byte[] OutputPng);

/// <summary>PNG charts drawn with SkiaSharp, so the report needs no plotting runtime or network.</summary>
public static class Plots
{
    public static readonly SKColor Blue = new(0x1f, 0x77, 0xb4);
    public static readonly SKColor Orange = new(0xff, 0x7f, 0x0e);
    public static readonly SKColor Green = new(0x2c, 0xa0, 0x2c);
    public static readonly SKColor Red = new(0xd6, 0x27, 0x28);
    public static readonly SKColor Purple = new(0x94, 0x67, 0xbd);
    public static readonly SKColor Brown = new(0x8c, 0x56, 0x4b);

    // The NoDependencies native build has no font manager, so the default typeface draws nothing: load a TTF by path.
    private static readonly SKTypeface Typeface = LoadTypeface();

    private static SKTypeface LoadTypeface()
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
        foreach (var c in candidates)
            if (c.Length > 0 && File.Exists(c) && SKTypeface.FromFile(c) is { } tf)
                return tf;
        return SKTypeface.Default;
    }

    public static void LineChart(string path, string title, string xLabel, IReadOnlyList<Series> series,
        double? threshold = null, string? thresholdLabel = null, double? yMin = null, double? yMax = null, int width = 960, int height = 320)
    {
        const float left = 60, right = 170, top = 34, bottom = 40;
        var info = new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Premul);
        using var surface = SKSurface.Create(info);
        var c = surface.Canvas;
        c.Clear(SKColors.White);

        var xs = series.SelectMany(s => s.Points.Select(p => p.X)).ToList();
        var ys = series.SelectMany(s => s.Points.Where(p => p.Y is { } y && double.IsFinite(y)).Select(p => p.Y!.Value)).ToList();
        if (threshold is { } t0) ys.Add(t0);
        double x0 = xs.Count > 0 ? xs.Min() : 0, x1 = xs.Count > 0 ? xs.Max() : 1;
        if (x1 - x0 < 1e-9) x1 = x0 + 1;
        double y0 = yMin ?? (ys.Count > 0 ? ys.Min() : 0), y1 = yMax ?? (ys.Count > 0 ? ys.Max() : 1);
        if (y1 - y0 < 1e-9) { y0 -= 0.5; y1 += 0.5; }
        var pad = (y1 - y0) * 0.05;
        if (yMin is null) y0 -= pad;
        if (yMax is null) y1 += pad;

        float plotW = width - left - right, plotH = height - top - bottom;
        float X(double v) => left + (float)((v - x0) / (x1 - x0)) * plotW;
        float Y(double v) => top + plotH - (float)((v - y0) / (y1 - y0)) * plotH;

        using var font = new SKFont(Typeface, 12);
        using var titleFont = new SKFont(Typeface, 15);
        using var text = new SKPaint { Color = SKColors.Black, IsAntialias = true };
        using var grid = new SKPaint { Color = new SKColor(0xdd, 0xdd, 0xdd), StrokeWidth = 1, Style = SKPaintStyle.Stroke };
        using var axis = new SKPaint { Color = SKColors.Black, StrokeWidth = 1, Style = SKPaintStyle.Stroke, IsAntialias = true };

        c.DrawText(title, left, 20, SKTextAlign.Left, titleFont, text);
        for (var i = 0; i <= 4; i++)
        {
            var v = y0 + (y1 - y0) * i / 4;
            c.DrawLine(left, Y(v), left + plotW, Y(v), grid);
            c.DrawText(v.ToString("0.##", System.Globalization.CultureInfo.InvariantCulture), left - 6, Y(v) + 4, SKTextAlign.Right, font, text);
            var xv = x0 + (x1 - x0) * i / 4;
            c.DrawText(xv.ToString("0.##", System.Globalization.CultureInfo.InvariantCulture), X(xv), top + plotH + 16, SKTextAlign.Center, font, text);
        }
        c.DrawRect(left, top, plotW, plotH, axis);
        c.DrawText(xLabel, left + plotW / 2, height - 6, SKTextAlign.Center, font, text);

        var legendY = top + 10f;
        if (threshold is { } t)
        {
            using var dash = new SKPaint { Color = Red, StrokeWidth = 1.5f, Style = SKPaintStyle.Stroke, IsAntialias = true, PathEffect = SKPathEffect.CreateDash([6, 4], 0) };
            c.DrawLine(left, Y(t), left + plotW, Y(t), dash);
            c.DrawLine(left + plotW + 10, legendY, left + plotW + 30, legendY, dash);
            c.DrawText(thresholdLabel ?? $"threshold {t:0.###}", left + plotW + 36, legendY + 4, SKTextAlign.Left, font, text);
            legendY += 18;
        }

        c.Save();
        c.ClipRect(new SKRect(left, top, left + plotW, top + plotH));
        foreach (var s in series)
        {
            using var pen = new SKPaint { Color = s.Color, StrokeWidth = 1.6f, Style = SKPaintStyle.Stroke, IsAntialias = true };
            using var dot = new SKPaint { Color = s.Color, Style = SKPaintStyle.Fill, IsAntialias = true };
#pragma warning disable CS0618 // SKPathBuilder is not in every SkiaSharp 3.x/4.x build; SKPath still works
            using var path2 = new SKPath();
            var open = false;
            foreach (var (x, y) in s.Points)
            {
                if (y is not { } yv || !double.IsFinite(yv)) { open = false; continue; }
                if (!open) { path2.MoveTo(X(x), Y(yv)); open = true; } else path2.LineTo(X(x), Y(yv));
                if (s.Points.Count <= 60) c.DrawCircle(X(x), Y(yv), 2.2f, dot);
            }
#pragma warning restore CS0618
            c.DrawPath(path2, pen);
        }
        c.Restore();

        foreach (var s in series)
        {
            using var pen = new SKPaint { Color = s.Color, StrokeWidth = 2.5f, Style = SKPaintStyle.Stroke };
            c.DrawLine(left + plotW + 10, legendY, left + plotW + 30, legendY, pen);
            c.DrawText(s.Name, left + plotW + 36, legendY + 4, SKTextAlign.Left, font, text);
            legendY += 18;
        }
        Save(surface, path);
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
