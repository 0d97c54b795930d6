using System.Diagnostics;
using System.Globalization;
using System.Text.Json;

namespace Deid.Bench;

/// <summary>
/// `make bench ARGS=soak`: a 30-minute synthetic talking-head clip (talk_small.mp4 at 256 px, encoded once and looped
/// by stream copy; DEID_SOAK_MINUTES to change the length) through the real `deid anonymize` (blur), its resident
/// memory sampled every DEID_SOAK_INTERVAL seconds (5). Memory is flat when the mean of the last quarter of the samples
/// is at most 1.05× that of the first quarter. Writes bench/soak.json (every sample), bench/soak_rss.png and a table.
/// </summary>
public static class SoakBench
{
    public const double FlatLimit = 1.05;

    public static void Run(BenchResults r)
    {
        var clip = Path.Combine(Suites.Shared, "media", "videos", "talk_small.mp4");
        if (!File.Exists(clip)) { Console.Error.WriteLine($"skip soak: {clip} not found"); return; }
        var inv = CultureInfo.InvariantCulture;
        var minutes = double.TryParse(Environment.GetEnvironmentVariable("DEID_SOAK_MINUTES"), NumberStyles.Float, inv, out var m) && m > 0 ? m : 30;
        var interval = double.TryParse(Environment.GetEnvironmentVariable("DEID_SOAK_INTERVAL"), NumberStyles.Float, inv, out var iv) && iv > 0 ? iv : 5;
        using var tmp = new BenchTemp();

        // One pass at reduced size, then looped by stream copy (no re-encode) to the full length.
        var once = tmp.File("once.mp4");
        var soak = tmp.File("soak.mp4");
        PipelineBench.RunTool("ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y", "-i", clip, "-vf", "scale=256:-2",
            "-c:v", "libx264", "-preset", "veryfast", "-g", "50", "-c:a", "aac", "-b:a", "64k", once);
        PipelineBench.RunTool("ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y", "-stream_loop", "-1", "-i", once,
            "-t", (minutes * 60).ToString("0.###", inv), "-c", "copy", soak);
        var inFrames = HeaderFrames(soak);
        Console.Error.WriteLine($"soak: {minutes} min clip, {inFrames} frames at 256 px; sampling RSS every {interval} s");

        var runner = Suites.DeidRunner(TimeSpan.FromHours(6));
        var output = tmp.File("out.mp4");
        var psi = new ProcessStartInfo(runner.Executable) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in runner.PrefixArgs) psi.ArgumentList.Add(a);
        foreach (var a in new[] { "anonymize", soak, "-o", output, "--mode", "blur" }) psi.ArgumentList.Add(a);
        var samples = new List<(double T, double RssMiB)>();
        var sw = Stopwatch.StartNew();
        using (var p = Process.Start(psi)!)
        {
            var err = p.StandardError.ReadToEndAsync();
            var stdout = p.StandardOutput.ReadToEndAsync();
            var next = 0.0;
            while (!p.WaitForExit(200))
            {
                if (sw.Elapsed.TotalSeconds < next) continue;
                next += interval;
                if (Suites.RssKb(p.Id) is long kb) samples.Add((sw.Elapsed.TotalSeconds, kb / 1024.0));
                if (samples.Count % 60 == 0 && samples.Count > 0)
                    Console.Error.WriteLine($"soak: {sw.Elapsed.TotalMinutes:F1} min, RSS {samples[^1].RssMiB:F0} MiB");
            }
            p.WaitForExit();
            if (p.ExitCode != 0) throw new InvalidOperationException($"soak run failed (exit {p.ExitCode}): {err.Result.Trim()}");
            Console.Error.WriteLine(stdout.Result.Trim());
        }
        var elapsed = sw.Elapsed;
        var outFrames = HeaderFrames(output);
        if (samples.Count < 4) throw new InvalidOperationException($"soak: only {samples.Count} RSS samples; lengthen DEID_SOAK_MINUTES or shorten DEID_SOAK_INTERVAL");

        var q = samples.Count / 4;
        var first = samples.Take(q).Average(s => s.RssMiB);
        var last = samples.Skip(samples.Count - q).Average(s => s.RssMiB);
        var ratio = last / first;
        var flat = ratio <= FlatLimit;
        r.Add(new("soak", $"clip length ({inFrames} frames, 256 px)", minutes, "min"));
        r.Add(new("soak", "run time", elapsed.TotalMinutes, "min", new() { ["fps"] = outFrames / elapsed.TotalSeconds }));
        r.Add(new("soak", "output frames = input frames", outFrames == inFrames ? 1 : 0, "bool", new() { ["in"] = inFrames, ["out"] = outFrames }));
        r.Add(new("soak", "RSS first-quarter mean", first, "MiB"));
        r.Add(new("soak", "RSS last-quarter mean", last, "MiB"));
        r.Add(new("soak", "RSS peak", samples.Max(s => s.RssMiB), "MiB"));
        r.Add(new("soak", "last / first quarter", ratio, $"ratio (flat: <= {FlatLimit})", new() { ["flat"] = flat, ["samples"] = samples.Count }));

        // The curve, a row a minute (or a tenth of the run, whichever is shorter).
        var step = Math.Max(1, Math.Min((int)Math.Round(60 / interval), samples.Count / 10));
        Console.WriteLine("soak RSS over time:");
        Console.WriteLine("   t (min)   RSS (MiB)");
        for (var i = 0; i < samples.Count; i += step)
            Console.WriteLine($"{samples[i].T / 60,10:F1}  {samples[i].RssMiB,10:F1}");
        Console.WriteLine($"first quarter {first:F1} MiB, last quarter {last:F1} MiB, ratio {ratio:F3} -> {(flat ? "flat" : "NOT flat")}");

        var benchDir = Path.Combine(Suites.RepoRoot, "bench");
        Directory.CreateDirectory(benchDir);
        var png = Path.Combine(benchDir, "soak_rss.png");
        Plot(samples, first, last, ratio, minutes, png);
        File.WriteAllText(Path.Combine(benchDir, "soak.json"), JsonSerializer.Serialize(new
        {
            clipMinutes = minutes, frames = inFrames, outputFrames = outFrames, intervalSeconds = interval, runSeconds = elapsed.TotalSeconds,
            firstQuarterMeanMiB = first, lastQuarterMeanMiB = last, ratio, flat, limit = FlatLimit,
            samples = samples.Select(s => new { t = s.T, rssMiB = s.RssMiB }),
        }, new JsonSerializerOptions { WriteIndented = true }));
        Console.WriteLine($"wrote {png} and {Path.Combine(benchDir, "soak.json")}");
    }

    private static void Plot(List<(double T, double RssMiB)> samples, double first, double last, double ratio, double minutes, string png)
    {
        var plt = new ScottPlot.Plot();
        var xs = samples.Select(s => s.T / 60).ToArray();
        var ys = samples.Select(s => s.RssMiB).ToArray();
        var line = plt.Add.Scatter(xs, ys);
        line.LegendText = "deid RSS";
        line.MarkerSize = 0;
        var q = samples.Count / 4;
        var a = plt.Add.Line(xs[0], first, xs[q - 1], first);
        a.LegendText = $"first-quarter mean {first:F0} MiB";
        a.LineWidth = 3;
        var b = plt.Add.Line(xs[^q], last, xs[^1], last);
        b.LegendText = $"last-quarter mean {last:F0} MiB (x{ratio:F3})";
        b.LineWidth = 3;
        plt.Title($"deid anonymize (blur), {minutes:0.#}-minute talking-head clip at 256 px");
        plt.XLabel("time (min)");
        plt.YLabel("resident memory (MiB)");
        plt.Axes.SetLimitsY(0, ys.Max() * 1.15);
        plt.ShowLegend(ScottPlot.Alignment.LowerRight);
        plt.SavePng(png, 900, 500);
    }

    private static long HeaderFrames(string path)
    {
        var (_, o, _) = PipelineBench.RunTool("ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=nb_frames", "-of", "csv=p=0", path);
        return long.TryParse(o.Trim().Trim(','), NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) ? n : -1;
    }
}
