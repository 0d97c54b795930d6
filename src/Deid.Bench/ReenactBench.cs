using System.Diagnostics;
using Deid.Faces;
using Deid.Media;
using Deid.Models;
using Deid.Pipeline;
using OpenCvSharp;
using VideoWriter = Deid.Media.VideoWriter;

namespace Deid.Bench;

/// <summary>
/// Issue 10's benchmark: `deid reenact` on the first frames of talk_d3.mp4 driving a shared identity photo, with the
/// method's real-size networks at random weights (where no files are present): each stage alone on in-memory frames,
/// then the whole command, and whole / inference alone (target ≥ 0.9: nothing else holds G back).
/// </summary>
public static class ReenactBench
{
    private const int Frames = 24;

    public static void Run(BenchResults r)
    {
        var clip = Path.Combine(Suites.Shared, "media", "videos", "talk_d3.mp4");
        var still = Path.Combine(Suites.Shared, "media", "identities", "photo_s11.jpg");
        if (!File.Exists(clip) || !File.Exists(still)) { Console.Error.WriteLine($"skip reenact: {clip} or {still} not found"); return; }
        const string suite = "reenact:talk_d3";
        using var tmp = new BenchTemp();
        var driving = tmp.File("driving.mp4");
        var (code, _, err) = PipelineBench.RunTool("ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y", "-i", clip, "-frames:v", Frames.ToString(), "-c:v", "libx264",
            "-crf", "18", "-preset", "veryfast", "-c:a", "copy", driving);
        if (code != 0) throw new InvalidOperationException("ffmpeg failed to cut the driving clip: " + err);

        NativeMemory.TuneForTensors();
        try
        {
            using var engine = new DeidEngine("cpu");
            var spec = new LatentWeightsSpec { RandomWeights = true, RandomSize = RandomWeightsSize.Published };
            var sw = Stopwatch.StartNew();
            var nets = engine.Latent(spec);
            r.Add(new(suite, "load networks", sw.Elapsed.TotalSeconds, "s", new() { ["random"] = string.Join(",", nets.RandomParts) }));
            var predictor = engine.Predictor;
            var recognizer = engine.Recognizer;
            var options = new ReenactOptions { Latent = new LatentOptions { Weights = spec } };
            int workers = options.Workers;

            var frames = new List<VideoFrame>();
            using (var reader = new VideoReader(driving))
                foreach (var f in reader.ReadFrames()) frames.Add(f);
            using var image = Cv2.ImRead(still);
            try
            {
                sw.Restart();
                var found = new List<FaceDetection>[frames.Count];
                Parallel.For(0, frames.Count, new ParallelOptions { MaxDegreeOfParallelism = workers }, () => new HogFaceFinder(),
                    (i, _, det) => { found[i] = FrameDetector.Detect(det, predictor, frames[i].Image); return det; }, det => det.Dispose());
                r.Add(new(suite, $"detect+landmarks alone ({workers} workers)", frames.Count / sw.Elapsed.TotalSeconds, "fps"));

                var aligner = new FfhqAligner(nets.ImageSize);
                sw.Restart();
                var aligned = found.Select((d, i) => d.Where(x => x.Landmarks != null).MaxBy(x => x.Box.Area) is { } face
                    ? (i, aligner.Align(frames[i].Image, face.Landmarks!)) : ((int, AlignedFace)?)null).OfType<(int Frame, AlignedFace Face)>().ToList();
                r.Add(new(suite, "align alone", frames.Count / sw.Elapsed.TotalSeconds, "fps"));

                // The inference stage alone: the latent stage with the still's identity, in batches of the default size.
                var stillFace = engine.Faces(DetectorKind.Hog, options.MinConfidence).Largest(image, "the still").Face;
                using var stillAligned = FaceImageService.Align(image, stillFace, nets.ImageSize);
                var photo = new IdentityPhoto(still, stillAligned.Crop.Clone(), stillAligned.TransformToCrop(stillFace.Landmarks.Points));
                var heads = new List<Mat>();
                using (var stage = new LatentFaceStage(nets, recognizer, options.Latent with { Identity = still }, options.BatchSize, [],
                           new Dictionary<string, IdentityPhoto> { [still] = photo }, _ => { }))
                {
                    var crops = aligned.Select(a => new FaceCrop(frames[a.Frame].Index, 1, a.Face.Crop, frames[a.Frame].Time.TotalSeconds)).ToList();
                    sw.Restart();
                    foreach (var batch in crops.Chunk(options.BatchSize))
                        heads.AddRange(engine.Executor.Run(() => stage.Process(batch, CancellationToken.None)));
                }
                var inferenceFps = frames.Count / sw.Elapsed.TotalSeconds;
                r.Add(new(suite, $"inference alone (E_attr, M, G; batch {options.BatchSize})", inferenceFps, "fps"));

                // Paste into the still (colour match included) and encode at the still's size.
                using var picture = image.Clone();
                var place = Pipeline.Affine.FromMat(stillAligned.CropToFrame);
                sw.Restart();
                var pictures = new List<VideoFrame>();
                foreach (var (h, k) in heads.Select((h, k) => (h, k)))
                {
                    var p = picture.Clone();
                    using (var toCrop = place.Inverse().ToMat())
                    using (var toFrame = place.ToMat())
                        FacePaster.Paste(p, new AlignedFace(stillAligned.Crop, toCrop, toFrame, stillAligned.Quad, stillAligned.FrameRegion), h);
                    pictures.Add(new VideoFrame(frames[k].Index, frames[k].Pts, frames[k].Time, p));
                }
                r.Add(new(suite, "paste into the still alone", frames.Count / sw.Elapsed.TotalSeconds, "fps"));
                sw.Restart();
                using (var reader = new VideoReader(driving))
                using (var writer = new VideoWriter(tmp.File("enc.mp4"), VideoWriterSpec.From(reader.Info) with { Width = image.Width, Height = image.Height, Rotation = 0 }))
                {
                    foreach (var p in pictures) writer.Write(p);
                    writer.Complete();
                }
                r.Add(new(suite, $"encode alone ({image.Width}x{image.Height})", frames.Count / sw.Elapsed.TotalSeconds, "fps"));
                foreach (var p in pictures) p.Dispose();
                foreach (var h in heads) h.Dispose();
                foreach (var a in aligned) a.Face.Dispose();

                // The whole command (networks already loaded, as in a long-lived engine).
                sw.Restart();
                using var report = Reenactor.ReenactAsync(engine, still, driving, tmp.File("out.mp4"), options).GetAwaiter().GetResult();
                var whole = report.Frames / sw.Elapsed.TotalSeconds;
                var idle = report.Inference is { } inf && inf.Busy + inf.Idle > TimeSpan.Zero ? inf.Idle / (inf.Busy + inf.Idle) : 0;
                r.Add(new(suite, "whole reenact", whole, "fps", new()
                {
                    ["frames"] = report.Frames, ["generated"] = report.Generated, ["held"] = report.Held,
                    ["inference_busy_s"] = report.Inference?.Busy.TotalSeconds ?? 0, ["inference_idle_fraction"] = idle,
                    ["peak_rss_mib"] = (Suites.PeakRssKb() ?? 0) / 1024.0,
                }));
                r.Add(new(suite, "whole / inference alone", whole / inferenceFps, "ratio (target >= 0.9)"));
            }
            finally
            {
                foreach (var f in frames) f.Dispose();
            }
        }
        finally
        {
            NativeMemory.TuneForStreaming();
        }
    }
}
