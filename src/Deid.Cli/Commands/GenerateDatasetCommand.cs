using System.CommandLine;
using System.Diagnostics;
using Deid.Models;
using Deid.Training;
using TorchSharp;

namespace Deid.Cli.Commands;

/// <summary>
/// <c>deid generate-dataset --generator G.safetensors --count N [--truncation ψ] [--seed S] -o DIR</c>: the paper's
/// training data drawn from G itself (PNG images + w shards); a rerun continues where the last one stopped.
/// </summary>
public static class GenerateDatasetCommand
{
    public static Command Create()
    {
        var generator = new Option<string>("--generator") { Description = "StyleGAN2 generator in deid's safetensors form (`deid models import … --as stylegan2`)", Required = true };
        var count = new Option<int>("--count") { Description = "number of (image, w) pairs (the paper: 70000)", Required = true };
        var truncation = new Option<double>("--truncation") { Description = "ψ in (0,1]: pull w toward the mean w (default 1: none; the w are D_W's real samples)", DefaultValueFactory = _ => 1.0 };
        var seed = new Option<long>("--seed") { Description = "seed of the z draws (default 0)", DefaultValueFactory = _ => 0 };
        var output = new Option<string>("--output", "-o") { Description = "dataset folder (created; an existing dataset folder is continued)", Required = true };
        var device = new Option<string>("--device") { Description = "cpu, cuda, cuda:N or auto", DefaultValueFactory = _ => "cpu" };
        var batch = new Option<int>("--batch") { Description = "images drawn per generator call (default 8)", DefaultValueFactory = _ => 8 };
        var cmd = new Command("generate-dataset", "Draw training pairs (image, w) from a StyleGAN2 generator: z ~ N(0,I), w = mapping(z), image = G(w)");
        foreach (var o in new Option[] { generator, count, truncation, seed, output, device, batch }) cmd.Options.Add(o);
        cmd.SetAction(async (ParseResult r, CancellationToken ct) =>
        {
            var genPath = r.GetValue(generator)!;
            int n = r.GetValue(count);
            if (n < 1) throw new ArgumentException($"--count must be at least 1, got {n}");
            if (r.GetValue(batch) < 1) throw new ArgumentException("--batch must be at least 1");
            var dev = DeviceSelection.Resolve(r.GetValue(device));
            using var g = TrainingSetup.LoadGenerator(genPath);
            g.to(dev);
            var dir = r.GetValue(output)!;
            var sw = Stopwatch.StartNew();
            int startDone = -1;
            var last = DateTime.MinValue;
            await Task.Run(() => DatasetGenerator.Generate(g, genPath, dir, n, r.GetValue(truncation), r.GetValue(seed),
                batchSize: r.GetValue(batch), ct: ct, progress: (done, total) =>
                {
                    if (startDone < 0) { startDone = done; sw.Restart(); }
                    if ((DateTime.UtcNow - last).TotalSeconds < 0.5 && done < total) return;
                    last = DateTime.UtcNow;
                    double rate = (done - startDone) / Math.Max(1e-9, sw.Elapsed.TotalSeconds);
                    var eta = rate > 0 ? TimeSpan.FromSeconds((total - done) / rate) : TimeSpan.Zero;
                    int fill = (int)(30L * done / total);
                    Console.Error.Write($"\r[{new string('#', fill)}{new string('-', 30 - fill)}] {done}/{total} {rate:F1} img/s ETA {eta:hh\\:mm\\:ss}  ");
                }), ct);
            Console.Error.WriteLine();
            Console.WriteLine($"dataset {Path.GetFullPath(dir)}: {n} images of {g.Size}x{g.Size}, w of {g.StyleDim} dims");
            return 0;
        });
        return cmd;
    }
}
