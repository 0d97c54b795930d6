using System.Diagnostics;
using System.Text.Json;
using Deid.Models.StyleGAN2;
using TorchSharp;
using static TorchSharp.torch;
using Generator = Deid.Models.StyleGAN2.Generator;

namespace Deid.Bench;

/// <summary>
/// StyleGAN2 G throughput at 256 px (config-f widths, random weights: time does not depend on the values), batch 1
/// and 8, next to the same computation in Python torch (scripts/bench_reference.py) with the same thread count.
/// DEID_BENCH_G_BATCHES (e.g. "1,8,32") changes the batch sizes; a CPU image takes seconds, so only a few are timed.
/// </summary>
public static class ModelBench
{
    private const string Suite = "models";

    public static void Run(BenchResults r)
    {
        var batches = (Environment.GetEnvironmentVariable("DEID_BENCH_G_BATCHES") ?? "1,8")
            .Split(',', StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).ToArray();
        int threads = torch.get_num_threads();
        var ours = new Dictionary<int, double>();

        using (var g = new Generator(StyleGAN2Config.Ffhq256))
        {
            g.eval();
            using var _ = no_grad();
            using (var scope = NewDisposeScope()) g.forward(randn(1, 512));   // warm-up: allocator and oneDNN primitive caches
            foreach (var b in batches)
            {
                var secs = new List<double>();
                for (int i = 0; i < Repeats(b); i++)
                {
                    using var scope = NewDisposeScope();
                    var z = randn(b, 512);
                    var sw = Stopwatch.StartNew();
                    g.forward(z);
                    secs.Add(sw.Elapsed.TotalSeconds);
                }
                double best = secs.Min();
                ours[b] = b / best;
                r.Add(new BenchRow(Suite, $"G 256px batch {b} TorchSharp", b / best, "img/s",
                    new() { ["seconds"] = secs, ["threads"] = threads }));
            }
        }
        r.Add(new BenchRow(Suite, "G bench peak RSS (TorchSharp process)", PeakRssMb(), "MB"));

        var reference = RunPython(batches, threads);
        if (reference is null) return;
        foreach (var run in reference.Value.GetProperty("runs").EnumerateArray())
        {
            int b = run.GetProperty("batch").GetInt32();
            double best = run.GetProperty("seconds").EnumerateArray().Min(e => e.GetDouble());
            r.Add(new BenchRow(Suite, $"G 256px batch {b} python torch {reference.Value.GetProperty("torch").GetString()}", b / best, "img/s",
                new() { ["threads"] = reference.Value.GetProperty("threads").GetInt32() }));
            if (ours.TryGetValue(b, out var ips))
                r.Add(new BenchRow(Suite, $"G 256px batch {b} speed ratio TorchSharp/python", ips / (b / best), "x"));
        }
        r.Add(new BenchRow(Suite, "G bench peak RSS (python reference)", reference.Value.GetProperty("peak_rss_mb").GetDouble(), "MB"));
    }

    private static int Repeats(int batch) => batch <= 1 ? 2 : 1;

    private static double PeakRssMb()
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                return double.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) / 1024;
        return double.NaN;
    }

    private static JsonElement? RunPython(int[] batches, int threads)
    {
        const string python = "/usr/bin/python3";
        var script = Path.Combine(Suites.RepoRoot, "scripts", "bench_reference.py");
        if (!File.Exists(python) || !File.Exists(script))
        {
            Console.Error.WriteLine("models bench: no /usr/bin/python3 or scripts/bench_reference.py; skipping the reference timing");
            return null;
        }
        var psi = new ProcessStartInfo(python)
        {
            ArgumentList = { script, "--batches", string.Join(",", batches), "--threads", threads.ToString(), "--repeats", "2" },
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using var p = Process.Start(psi)!;
        var stderr = p.StandardError.ReadToEndAsync();
        var stdout = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0)
        {
            Console.Error.WriteLine($"models bench: python reference failed ({p.ExitCode}): {stderr.Result.Trim()}");
            return null;
        }
        var last = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).LastOrDefault() ?? "{}";
        using var doc = JsonDocument.Parse(last);
        return doc.RootElement.Clone();
    }
}
