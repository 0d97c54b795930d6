using System.Diagnostics;
using System.Text.Json;
using Deid.Models.Encoders;
using Deid.Models.StyleGAN2;
using Deid.TestSupport;
using Deid.Training;
using TorchSharp;
using Generator = Deid.Models.StyleGAN2.Generator;

namespace Deid.Bench;

/// <summary>
/// Training at the published sizes with random weights on CPU (G 256 config-f, InceptionV3 at 299, IR-SE50, face-api's
/// landmark net, M 2560-2048-1024-512-512, D_W 512-256-128-64-1), next to the same networks and the same step in
/// Debian's python3-torch (src/Deid.Bench/python/train_reference.py) with the same thread count: training steps/s at
/// batch 6 (1 warm-up step, then the timed ones), CPU seconds per step (the honest figure on a shared machine), the
/// speed ratio (target ≥ 1), peak RSS of each process, and dataset generation images/s as `deid generate-dataset`
/// draws them (z → w → G(w), PNG + w shards) on both sides.
/// DEID_BENCH_TRAIN_BATCH (default 6) and DEID_BENCH_TRAIN_STEPS (timed steps, default 2) change the size of the run:
/// a real-size step at batch 6 takes minutes on 2 cores.
/// </summary>
public static class TrainingBench
{
    private const string Suite = "training";

    public static void Run(BenchResults r)
    {
        int batch = EnvInt("DEID_BENCH_TRAIN_BATCH", 6), steps = EnvInt("DEID_BENCH_TRAIN_STEPS", 2), warmup = 1;
        // Enough images for a batch of attributes and one of identities, plus the held-out pair the trainer keeps.
        int images = 2 * batch + 2;
        int threads = torch.get_num_threads();
        Deid.Media.NativeMemory.TuneForTensors();   // as the models bench: glibc's warmed-up threshold, as python has it
        var modelsDir = Environment.GetEnvironmentVariable("DEID_MODELS");
        Deid.Models.FaceApi.FaceLandmark68Net eLnd;
        try { eLnd = TrainingSetup.LoadLandmarkEncoder(modelsDir); }
        catch (RunException e) { Console.Error.WriteLine($"training bench: {e.Message}; skipped"); return; }

        using var tmp = new TempDir();
        var gPath = tmp.File("g256.safetensors");
        torch.random.manual_seed(1);
        using (var g0 = new Generator(StyleGAN2Config.Ffhq256))
            Deid.Models.Weights.SafeTensors.Save(gPath, PyTorchOrder.StateDict(g0), new Dictionary<string, string> { ["config"] = g0.Config.ToJson() });
        using var g = Generator.FromSafeTensors(gPath);

        Suites.ResetPeakRss();
        var (genWall, genCpu) = Timed(() => DatasetGenerator.Generate(g, gPath, tmp.File("data"), count: images, shardSize: 1000));
        double genIps = images / genWall;
        r.Add(new BenchRow(Suite, $"dataset generation 256px (TorchSharp, {threads} threads)", genIps, "img/s",
            new() { ["images"] = images, ["cpu_seconds_per_image"] = genCpu / images }));
        r.Add(new BenchRow(Suite, "dataset generation CPU time per image (TorchSharp)", genCpu / images, "s"));

        var cfg = new TrainingConfig { BatchSize = batch, Steps = warmup + steps, ValidationCount = 2, CheckpointEvery = 0, GridEvery = 0, ValidateEvery = 0 };
        var (model, dw) = TrainingSetup.Build(cfg, g, new IrSe50(), eLnd);
        using var _m = model;
        using var _d = dw;
        using var trainer = new Trainer(cfg, model, dw, ImageLatentDataset.Open(tmp.File("data")), tmp.File("run"), new RunSources(tmp.File("data"), "random", "irse50"));
        trainer.StartNew();
        Suites.ResetPeakRss();
        for (int i = 0; i < warmup; i++) trainer.TrainStep();
        var wall = new List<double>();
        var cpu = new List<double>();
        for (int i = 0; i < steps; i++)
        {
            var (w, c) = Timed(() => trainer.TrainStep());
            wall.Add(w);
            cpu.Add(c);
            Console.Error.WriteLine($"training bench: TorchSharp step {i + 1}/{steps} at batch {batch}: {w:F1} s, CPU {c:F1} s");
        }
        double ours = 1 / wall.Average();
        r.Add(new BenchRow(Suite, $"training step batch {batch} (TorchSharp, {threads} threads)", ours, "step/s",
            new() { ["seconds"] = wall, ["cpu_seconds"] = cpu }));
        r.Add(new BenchRow(Suite, $"training step batch {batch} CPU time (TorchSharp)", cpu.Average(), "s"));
        r.Add(new BenchRow(Suite, $"training step batch {batch} peak RSS (TorchSharp process)", Suites.PeakRssMb(), "MB"));

        if (RunPython(batch, warmup, steps, images, threads) is not { } py) return;
        var pt = py.GetProperty("train");
        var pyWall = pt.GetProperty("seconds").EnumerateArray().Select(e => e.GetDouble()).ToList();
        var pyCpu = pt.GetProperty("cpu_seconds").EnumerateArray().Select(e => e.GetDouble()).ToList();
        var torchVersion = py.GetProperty("torch").GetString();
        double theirs = 1 / pyWall.Average();
        r.Add(new BenchRow(Suite, $"training step batch {batch} (python torch {torchVersion})", theirs, "step/s",
            new() { ["seconds"] = pyWall, ["cpu_seconds"] = pyCpu }));
        r.Add(new BenchRow(Suite, $"training step batch {batch} CPU time (python torch)", pyCpu.Average(), "s"));
        r.Add(new BenchRow(Suite, $"training step batch {batch} speed ratio TorchSharp/python", ours / theirs, "x"));
        r.Add(new BenchRow(Suite, $"training step batch {batch} CPU-time ratio python/TorchSharp", pyCpu.Average() / cpu.Average(), "x"));
        r.Add(new BenchRow(Suite, $"training step batch {batch} peak RSS (python process)", py.GetProperty("peak_rss_mb").GetDouble(), "MB"));
        var gen = py.GetProperty("gen");
        double pyGenIps = images / gen.GetProperty("seconds").GetDouble();
        r.Add(new BenchRow(Suite, $"dataset generation 256px (python torch {torchVersion})", pyGenIps, "img/s"));
        r.Add(new BenchRow(Suite, "dataset generation CPU time per image (python torch)", gen.GetProperty("cpu_seconds").GetDouble() / images, "s"));
        r.Add(new BenchRow(Suite, "dataset generation speed ratio TorchSharp/python", genIps / pyGenIps, "x"));
    }

    private static int EnvInt(string name, int fallback) =>
        int.TryParse(Environment.GetEnvironmentVariable(name), out var v) && v > 0 ? v : fallback;

    /// <summary>Wall seconds and this process's CPU seconds (user + system, all threads) of <paramref name="work"/>.</summary>
    private static (double Wall, double Cpu) Timed(Action work)
    {
        var proc = Process.GetCurrentProcess();
        var cpu0 = proc.TotalProcessorTime;
        var sw = Stopwatch.StartNew();
        work();
        sw.Stop();
        proc.Refresh();
        return (sw.Elapsed.TotalSeconds, (proc.TotalProcessorTime - cpu0).TotalSeconds);
    }

    private static JsonElement? RunPython(int batch, int warmup, int steps, int images, int threads)
    {
        const string python = "/usr/bin/python3";
        var script = Path.Combine(Suites.RepoRoot, "src", "Deid.Bench", "python", "train_reference.py");
        if (!File.Exists(python) || !File.Exists(script))
        {
            Console.Error.WriteLine($"training bench: no {python} or {script}; skipping the python reference");
            return null;
        }
        var psi = new ProcessStartInfo(python) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { script, "--batch", $"{batch}", "--warmup", $"{warmup}", "--steps", $"{steps}", "--gen-images", $"{images}", "--threads", $"{threads}" })
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stderr = p.StandardError.ReadToEndAsync();
        var stdout = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0)
        {
            Console.Error.WriteLine($"training bench: python reference failed ({p.ExitCode}): {stderr.Result.Trim().Split('\n')[^1]}");
            return null;
        }
        var last = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).LastOrDefault() ?? "{}";
        using var doc = JsonDocument.Parse(last);
        return doc.RootElement.Clone();
    }
}
