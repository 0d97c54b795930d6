using Deid.TestSupport;
using OpenCvSharp;

namespace Deid.Evaluation.Tests;

public class PlotTests
{
    // Data whose range has no round ends (the hand-drawn charts printed ticks such as 37.61, -18.79, -75.18).
    private static readonly Series[] Awkward =
    [
        new("yaw", Enumerable.Range(0, 170).Select(i => (i / 25.0 + 0.013, (double?)(37.61 * Math.Sin(i / 9.0)))).ToList(), Plots.Blue),
        new("roll", Enumerable.Range(0, 170).Select(i => (i / 25.0 + 0.013, i % 40 == 7 ? null : (double?)(-75.18 + i * 0.1))).ToList(), Plots.Green),
    ];

    [Fact]
    public void Axis_ticks_are_round_numbers()
    {
        using var tmp = new TempDir();
        var plot = Plots.BuildLineChart("pose", "time (s)", Awkward, threshold: 0.37, thresholdLabel: "same-person 0.37");
        plot.SavePng(tmp.File("chart.png"), 960, 320); // ticks are generated for the size the chart is drawn at
        foreach (var (axis, ticks) in new[] { ("x", plot.Axes.Bottom.TickGenerator.Ticks), ("y", plot.Axes.Left.TickGenerator.Ticks) })
        {
            var major = ticks.Where(t => t.IsMajor).Select(t => t.Position).Order().ToArray();
            Assert.True(major.Length >= 3, $"{axis}: {major.Length} major ticks");
            var step = major[1] - major[0];
            // a step of 1, 2 or 5 times a power of ten, and every tick a whole multiple of it
            var mantissa = step / Math.Pow(10, Math.Floor(Math.Log10(step)));
            Assert.Contains(Math.Round(mantissa, 6), new[] { 1.0, 2.0, 5.0 });
            foreach (var v in major)
                Assert.True(Math.Abs(v / step - Math.Round(v / step)) < 1e-6, $"{axis} tick {v} is not a multiple of {step}");
        }
    }

    [Fact]
    public void Chart_is_a_png_of_the_requested_size_with_text_and_lines()
    {
        using var tmp = new TempDir();
        var path = tmp.File("chart.png");
        Plots.LineChart(path, "Head pose (degrees)", "time (s)", Awkward, yMin: -90, yMax: 90);

        using var img = Cv2.ImRead(path, ImreadModes.Color);
        Assert.Equal(new Size(960, 320), img.Size());
        // Coloured pixels of both series, and dark pixels (text, axes) — a chart without a font draws no text.
        Assert.True(CountNear(img, Plots.Blue) > 200, "no blue line");
        Assert.True(CountNear(img, Plots.Green) > 200, "no green line");
        using var grey = img.CvtColor(ColorConversionCodes.BGR2GRAY);
        using var dark = grey.Threshold(80, 255, ThresholdTypes.BinaryInv);
        Assert.True(Cv2.CountNonZero(dark) > 2000, "no text");
    }

    private static int CountNear(Mat bgr, ScottPlot.Color c)
    {
        using var mask = new Mat();
        Cv2.InRange(bgr, new Scalar(c.B - 40, c.G - 40, c.R - 40), new Scalar(c.B + 40, c.G + 40, c.R + 40), mask);
        return Cv2.CountNonZero(mask);
    }
}
