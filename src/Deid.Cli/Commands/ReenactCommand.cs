using System.CommandLine;
using Deid.Pipeline;

namespace Deid.Cli.Commands;

public static class ReenactCommand
{
    public static Command Create()
    {
        var identity = new Option<string>("--identity") { Description = "The still photo to animate (its largest face is the identity).", Required = true };
        var driving = new Option<string>("--driving") { Description = "The driving video: its face's motion and expressions, its timing and audio.", Required = true };
        var output = new Option<string>("--output", "-o") { Description = "Output video file (written atomically; the driving clip's audio is copied).", Required = true };
        var crop = new Option<bool>("--crop") { Description = "Write the generated aligned heads (G's size) instead of pasting them into the still." };
        var size = new Option<string?>("--size") { Description = "Output picture size WxH, both even (default: the still's size)." };
        var report = new Option<string?>("--report") { Description = "Write a JSON report (per frame: found/held, w change, identity similarity, landmark distance; totals)." };
        var device = new Option<string>("--device") { Description = "cpu or cuda.", DefaultValueFactory = _ => "cpu" };
        var drivingTrack = new Option<int?>("--driving-track") { Description = "Follow this face track of the driving clip (ids as in the report); default: the largest face." };
        var detector = new Option<string>("--detector") { Description = "Face detector: hog, ssd or both.", DefaultValueFactory = _ => "hog" };
        var workers = new Option<int>("--workers") { Description = "Parallel landmark workers (faces are found in frame order by one finder that follows the stream).", DefaultValueFactory = _ => Environment.ProcessorCount };
        var batch = new Option<int>("--batch-size", "--batch") { Description = "Driving crops per generator batch.", DefaultValueFactory = _ => 8 };
        var wSmoothing = new Option<string>("--w-smoothing") { Description = "One-Euro smoothing of w over time, on or off.", DefaultValueFactory = _ => "on" };
        var weightsDir = new Option<string?>("--weights-dir") { Description = "Folder with E_attr.safetensors and M.safetensors (optionally G / E_id); the rest comes from the model store." };
        var randomWeights = new Option<bool>("--random-weights") { Description = "Build any missing network with seeded random weights (the heads are noise; for trying the pipeline)." };
        var randomSize = new Option<string>("--random-size") { Description = "With --random-weights: published (real sizes) or small (narrow networks).", DefaultValueFactory = _ => "published" };

        var cmd = new Command("reenact", "Animate a still photo with a driving clip's head motion and expressions (the still's identity, the clip's timing and audio).");
        foreach (var o in new Option[] { identity, driving, output, crop, size, report, device, drivingTrack, detector, workers, batch, wSmoothing, weightsDir, randomWeights, randomSize })
            cmd.Options.Add(o);

        cmd.SetAction(async (ParseResult r, CancellationToken ct) =>
        {
            try
            {
                (int W, int H)? wh = r.GetValue(size) is { } s ? Reenactor.ParseSize(s) : null;
                var options = new ReenactOptions
                {
                    Crop = r.GetValue(crop),
                    Width = wh?.W,
                    Height = wh?.H,
                    DrivingTrack = r.GetValue(drivingTrack),
                    Device = r.GetValue(device) ?? "cpu",
                    Detector = FaceFinderFactory.Parse(r.GetValue(detector)),
                    Workers = r.GetValue(workers),
                    BatchSize = r.GetValue(batch),
                    Latent = new LatentOptions
                    {
                        WSmoothing = AnonymizeOptionSet.ParseOnOff(r.GetValue(wSmoothing), "--w-smoothing"),
                        Weights = new Deid.Models.LatentWeightsSpec
                        {
                            WeightsDir = r.GetValue(weightsDir) is { } wd ? AnonymizeOptionSet.CheckWeightsDir(wd) : null,
                            RandomWeights = r.GetValue(randomWeights),
                            RandomSize = AnonymizeOptionSet.ParseRandomSize(r.GetValue(randomSize)),
                        },
                    },
                };
                if (options.Crop && wh != null) throw new ArgumentException("--size sets the still's picture size; --crop writes G-sized heads: use one of them");
                Reenactor.Validate(options);
                var still = r.GetValue(identity)!;
                var drivingPath = r.GetValue(driving)!;
                var outPath = r.GetValue(output)!;
                var reportPath = r.GetValue(report);
                if (reportPath != null) AnonymizeCommand.CheckReportPath(reportPath, drivingPath, outPath);
                if (options.Latent.Weights.RandomWeights)
                    Console.Error.WriteLine("deid: WARNING: --random-weights: networks without weight files get seeded RANDOM weights; the heads drawn are noise, not people");
                Deid.Media.NativeMemory.TuneForTensors();

                using var engine = new DeidEngine(options.Device);
                using var result = await Reenactor.ReenactAsync(engine, still, drivingPath, outPath, options, null, ct);
                if (reportPath != null) result.WriteJson(reportPath);
                foreach (var w in result.Warnings) Console.Error.WriteLine($"deid: warning: {w}");
                Console.WriteLine(
                    $"reenacted {result.Frames} frames in {result.Elapsed.TotalSeconds:F1}s ({result.Fps:F1} fps): " +
                    $"{result.Generated} generated, {result.Held} held, {result.NoHead} before the first driving face; " +
                    $"{result.Width}x{result.Height} -> {outPath}");
                return 0;
            }
            catch (Exception e)
            {
                return CliErrors.Report(e);
            }
        });
        return cmd;
    }
}
