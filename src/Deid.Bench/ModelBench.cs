using System.Diagnostics;
using System.Text.Json;
using Deid.Models.Encoders;
using Deid.Models.StyleGAN2;
using TorchSharp;
using static TorchSharp.torch;
using Generator = Deid.Models.StyleGAN2.Generator;

namespace Deid.Bench;

/// <summary>
/// Model throughput next to the same computation in Python torch (scripts/bench_reference.py) with the same
/// thread count, random weights (time does not depend on the values):
/// StyleGAN2 G at 256 px (config-f widths; batch 1, 8, 32) and E_attr (InceptionV3 pooled features, batch 1, 8) at 299 px.
/// DEID_BENCH_G_BATCHES / DEID_BENCH_EATTR_BATCHES (e.g. "1,8,32") change the batch sizes; a CPU image takes
/// around a second or more, so only a few are timed.
/// </summary>
public static class ModelBench
{
    private const string Suite = "models";

    // Images timed per batch size (runs = max(1, images / batch), best run reported), the same on both sides.
    // A CPU G image takes about a second, an E_attr image a fifth of one.
    private const int GImages = 2, EAttrImages = 16;

    public static void Run(BenchResults r)
    {
        int threads = torch.get_num_threads();
        // The python reference runs with glibc's adaptive threshold; this is its warmed-up state (see NativeMemory).
        Deid.Media.NativeMemory.TuneForTensors();

        var gBatches = Batches("DEID_BENCH_G_BATCHES", "1,8,32");
        var gOurs = TimeTorchSharp(r, "G 256px", gBatches, GImages, threads,
            () => new Generator(StyleGAN2Config.Ffhq256), b => randn(b, 512));
        r.Add(new BenchRow(Suite, "G bench peak RSS (TorchSharp process)", Suites.PeakRssMb(), "MB"));
        AddReference(r, "G 256px", "G bench", gOurs, RunPython(["--model", "g", "--images", $"{GImages}"], gBatches, threads));

        // Without the reset, VmHWM would still hold G's batch-8 peak and say nothing about E_attr.
        bool peakReset = Suites.ResetPeakRss();
        var eBatches = Batches("DEID_BENCH_EATTR_BATCHES", "1,8");
        var eOurs = TimeTorchSharp(r, "E_attr 299px", eBatches, EAttrImages, threads,
            () => new InceptionV3(), b => randn(b, 3, InceptionV3.InputSize, InceptionV3.InputSize));
        if (peakReset) r.Add(new BenchRow(Suite, "E_attr bench peak RSS (TorchSharp process)", Suites.PeakRssMb(), "MB"));
        AddReference(r, "E_attr 299px", "E_attr bench", eOurs,
            RunPython(["--model", "eattr", "--images", $"{EAttrImages}"], eBatches, threads));
    }

    private static int[] Batches(string envVar, string defaults) =>
        (Environment.GetEnvironmentVariable(envVar) ?? defaults)
            .Split(',', StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).ToArray();

    /// <summary>Best-of-repeats images/s per batch size, one row each; returns them for the ratio rows.</summary>
    private static Dictionary<int, double> TimeTorchSharp(BenchResults r, string label, int[] batches, int images, int threads,
        Func<nn.Module<Tensor, Tensor>> create, Func<int, Tensor> input)
    {
        var ours = new Dictionary<int, double>();
        using var net = create();
        net.eval();
        using var _ = no_grad();
        foreach (var b in batches)
        {
            // Untimed run at this batch size first: oneDNN builds its primitives per shape and the allocator
            // fills its heap per size; a video is processed in batches of one size, so the steady state counts.
            using (var scope = NewDisposeScope()) net.forward(input(b));
            var secs = new List<double>();
            for (int i = 0; i < Repeats(images, b); i++)
            {
                using var scope = NewDisposeScope();
                var x = input(b);
                var sw = Stopwatch.StartNew();
                net.forward(x);
                secs.Add(sw.Elapsed.TotalSeconds);
            }
            double best = secs.Min();
            ours[b] = b / best;
            r.Add(new BenchRow(Suite, $"{label} batch {b} TorchSharp", b / best, "img/s",
                new() { ["seconds"] = secs, ["threads"] = threads }));
        }
        return ours;
    }

    private static void AddReference(BenchResults r, string label, string rssLabel, Dictionary<int, double> ours, JsonElement? reference)
    {
        if (reference is null) return;
        var torchVersion = reference.Value.GetProperty("torch").GetString();
        foreach (var run in reference.Value.GetProperty("runs").EnumerateArray())
        {
            int b = run.GetProperty("batch").GetInt32();
            double best = run.GetProperty("seconds").EnumerateArray().Min(e => e.GetDouble());
            r.Add(new BenchRow(Suite, $"{label} batch {b} python torch {torchVersion}", b / best, "img/s",
                new() { ["threads"] = reference.Value.GetProperty("threads").GetInt32() }));
            if (ours.TryGetValue(b, out var ips))
                r.Add(new BenchRow(Suite, $"{label} batch {b} speed ratio TorchSharp/python", ips / (b / best), "x"));
        }
        r.Add(new BenchRow(Suite, $"{rssLabel} peak RSS (python reference)", reference.Value.GetProperty("peak_rss_mb").GetDouble(), "MB"));
    }

    /// <summary>Timed runs per batch size, as bench_reference.py's --images: max(1, images / batch).</summary>
    private static int Repeats(int images, int batch) => Math.Max(1, images / batch);

    private static JsonElement? RunPython(string[] modelArgs, int[] batches, int threads)
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
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        psi.ArgumentList.Add(script);
        foreach (var a in modelArgs) psi.ArgumentList.Add(a);
        foreach (var a in new[] { "--batches", string.Join(",", batches), "--threads", threads.ToString() }) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stderr = p.StandardError.ReadToEndAsync();
        var stdout = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0)
        {
            // E_attr's reference needs Debian's python3-torchvision; its absence shows up here as ModuleNotFoundError.
            Console.Error.WriteLine($"models bench: python reference {string.Join(" ", modelArgs)} failed ({p.ExitCode}): {stderr.Result.Trim()}");
            return null;
        }
        var last = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).LastOrDefault() ?? "{}";
        using var doc = JsonDocument.Parse(last);
        return doc.RootElement.Clone();
    }
}
