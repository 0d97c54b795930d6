using Deid.Faces;
using Deid.Media;
using Deid.Models;
using Deid.TestSupport;
using OpenCvSharp;
using static TorchSharp.torch;

namespace Deid.Pipeline.Tests;

/// <summary>One engine with the small random latent networks, shared by the latent tests (loading is the slow part).</summary>
public sealed class LatentEngine : IDisposable
{
    public static readonly LatentWeightsSpec Small = new()
    {
        // An empty weights folder: every latent network is random, whatever the developer's model store holds.
        WeightsDir = Directory.CreateTempSubdirectory("deid-noweights-").FullName,
        ModelsDir = Path.Combine(Path.GetTempPath(), "deid-no-latent-models"),
        RandomWeights = true, RandomSize = RandomWeightsSize.Small, RandomSeed = 3,
    };

    public DeidEngine Engine { get; } = new("cpu", TestPaths.Models);
    public LatentNetworks Networks => Engine.Latent(Small);

    public static AnonymizeOptions Options(LatentOptions? latent = null) => new()
    {
        Mode = AnonymizeMode.Latent, Workers = 2, BatchSize = 4,
        Latent = (latent ?? new LatentOptions()) with { Weights = Small, PrescanFrames = 3 },
    };

    public void Dispose()
    {
        Engine.Dispose();
        try { Directory.Delete(Small.WeightsDir!, true); } catch (IOException) { }
    }
}

public class LatentTests(Clips clips, LatentEngine latent) : IClassFixture<LatentEngine>
{
    private static string? Skip => File.Exists(Path.Combine(TestPaths.Models, OnnxFaceRecognizer.RelativePath)) ? null
        : $"the recognizer {OnnxFaceRecognizer.RelativePath} is missing in {TestPaths.Models}; run `make setup`";

    private static List<(long Pts, Mat Image)> ReadAll(string path)
    {
        using var reader = new VideoReader(path);
        var list = new List<(long, Mat)>();
        foreach (var f in reader.ReadFrames()) using (f) list.Add((f.Pts, f.Image.Clone()));
        return list;
    }

    private static int AudioPackets(string path)
    {
        var r = Tool.Run("ffprobe", "-v", "error", "-select_streams", "a:0", "-count_packets", "-show_entries", "stream=nb_read_packets", "-of", "csv=p=0", path);
        return int.Parse(r.StdOut.Trim().Split('\n')[0].Trim(','));
    }

    [Fact]
    public async Task Latent_KeepsFramesTimestampsAndAudio_AuditsEveryFace_AndIsDeterministic()
    {
        Assert.SkipWhen(Skip != null, Skip ?? "");
        using var tmp = new TempDir();
        var ct = TestContext.Current.CancellationToken;
        var first = await latent.Engine.AnonymizeAsync(clips.WithAudio, tmp.File("a.mp4"), LatentEngine.Options(), ct: ct);
        var loads = latent.Engine.Loads;
        var second = await latent.Engine.AnonymizeAsync(clips.WithAudio, tmp.File("b.mp4"), LatentEngine.Options(), ct: ct);
        Assert.Equal(loads, latent.Engine.Loads); // the second clip loads nothing

        var source = ReadAll(clips.WithAudio);
        var a = ReadAll(tmp.File("a.mp4"));
        var b = ReadAll(tmp.File("b.mp4"));
        Assert.Equal(source.Count, a.Count);
        Assert.Equal(source.Select(f => f.Pts), a.Select(f => f.Pts));
        Assert.Equal(AudioPackets(clips.WithAudio), AudioPackets(tmp.File("a.mp4")));
        // Same seed, same weights → the same pictures.
        for (var i = 0; i < a.Count; i++)
            Assert.Equal(0, Cv2.Norm(a[i].Image, b[i].Image, NormTypes.L1));

        Assert.Equal(source.Count, first.Frames);
        Assert.True(first.Replaced > 0);
        Assert.True(first.Audited);
        Assert.All(first.FrameRecords.SelectMany(f => f.Faces).Where(f => f.Handling != FaceHandling.FallbackBlurred),
            f => Assert.NotNull(f.Audit));
        Assert.Equal(new[] { "E_attr", "E_id", "G", "M" }, first.RandomWeights.Order());
        var id = Assert.Single(first.Identities);
        Assert.Equal("seed", id.Kind);
        Assert.Equal(0, id.Seed);
        Assert.Contains("\"identities\"", first.ToJson());
        Assert.Equal(first.FacesAudited, second.FacesAudited);

        // The face region changed: a generated head, not the source.
        var changed = Cv2.Norm(source[0].Image, a[0].Image, NormTypes.L1) / (512.0 * 512 * 3);
        Assert.True(changed > 2, $"mean abs change {changed:F2}");
        foreach (var f in source.Concat(a).Concat(b)) f.Image.Dispose();
    }

    [Fact]
    public async Task TwoPeople_GetTwoDifferentIdentities()
    {
        Assert.SkipWhen(Skip != null, Skip ?? "");
        using var tmp = new TempDir();
        var report = await latent.Engine.AnonymizeAsync(clips.Two, tmp.File("two.mp4"), LatentEngine.Options(new LatentOptions { Identity = "seed:5" }),
            ct: TestContext.Current.CancellationToken);
        Assert.Equal(2, report.Identities.Count);
        Assert.Equal(5, report.Identities[0].Seed);
        Assert.NotEqual(report.Identities[0].Seed, report.Identities[1].Seed);
        Assert.All(report.Identities, i => Assert.True(i.MaxSimilarityToClip < OnnxFaceRecognizer.SamePersonThreshold));
    }

    [Fact]
    public async Task PassthroughBehindTheAudit_EveryFaceIsFlaggedAndBlurred()
    {
        Assert.SkipWhen(Skip != null, Skip ?? "");
        using var tmp = new TempDir();
        var options = new AnonymizeOptions { Mode = AnonymizeMode.Passthrough, Workers = 2, BatchSize = 4, Audit = true };
        var report = await latent.Engine.AnonymizeAsync(clips.Face, tmp.File("out.mp4"), options, ct: TestContext.Current.CancellationToken);
        Assert.True(report.Faces > 0);
        Assert.True(report.LeaksFound > 0);
        Assert.Equal(report.LeaksFound, report.LeaksBlurred);
        Assert.Equal(0, report.LeaksFixed);
        Assert.Equal(report.Faces, report.FallbackBlurred); // none left as it was
        Assert.All(report.FrameRecords.SelectMany(f => f.Faces).Where(f => f.Audit != null), f =>
        {
            Assert.Equal(AuditAction.Blurred, f.Audit!.Action);
            Assert.True(f.Audit.SimilarityToSource >= OnnxFaceRecognizer.SamePersonThreshold);
        });
    }

    /// <summary>Aligned crops of the first frames of a clip, as the pipeline makes them.</summary>
    private List<FaceCrop> Crops(string clip, int count)
    {
        var faces = latent.Engine.Faces(DetectorKind.Hog, 0.5f);
        var crops = new List<FaceCrop>();
        using var reader = new VideoReader(clip);
        foreach (var f in reader.ReadFrames())
        {
            using (f)
            {
                if (crops.Count == count) break;
                var face = faces.Find(f.Image).FirstOrDefault();
                if (face == null) continue;
                using var aligned = FaceImageService.Align(f.Image, face, 256);
                crops.Add(new FaceCrop(f.Index, 1, aligned.Crop.Clone(), f.Time.TotalSeconds, aligned.TransformToCrop(face.Landmarks.Points)));
            }
        }
        return crops;
    }

    [Fact]
    public void WSmoothing_ReducesTheFrameToFrameChangeOfW()
    {
        Assert.SkipWhen(Skip != null, Skip ?? "");
        var crops = Crops(clips.Face, 12);
        try
        {
            double MeanStep(bool smoothing)
            {
                using var stage = new LatentFaceStage(latent.Networks, latent.Engine.Recognizer,
                    new LatentOptions { WSmoothing = smoothing }, 4, [], new Dictionary<string, IdentityPhoto>(), _ => { });
                foreach (var chunk in crops.Chunk(4))
                    foreach (var m in latent.Engine.Executor.Run(() => stage.Process(chunk, CancellationToken.None))) m.Dispose();
                var steps = stage.WSteps(1);
                Assert.Equal(crops.Count - 1, steps.Count);
                return steps.Average();
            }
            var raw = MeanStep(false);
            var smooth = MeanStep(true);
            Assert.True(smooth < 0.8 * raw, $"smoothed {smooth:G4} vs raw {raw:G4}");
        }
        finally { foreach (var c in crops) c.Crop.Dispose(); }
    }

    [Fact]
    public void SyntheticCandidate_CloseToAClipFace_IsRejectedAndTheNextSeedTaken()
    {
        Assert.SkipWhen(Skip != null, Skip ?? "");
        var crops = Crops(clips.Face, 1);
        var rng = new Random(1);
        float[] Unit(float[] v) => OnnxFaceRecognizer.Normalize(v);
        var clipFace = Unit(Enumerable.Range(0, 512).Select(_ => (float)rng.NextDouble() - 0.5f).ToArray());
        try
        {
            using var stage = new LatentFaceStage(latent.Networks, latent.Engine.Recognizer, new LatentOptions { Identity = "seed:40" }, 4,
                [clipFace], new Dictionary<string, IdentityPhoto>(), _ => { });
            var dim = latent.Networks.Model.IdentityEncoder.Dim;
            // Seed 40 is planted right next to the clip's face; every other candidate is far from it.
            stage.CandidateOverride = seed =>
            {
                var near = clipFace.Select((x, i) => x + (i == 0 ? 0.01f : 0f)).ToArray();
                var far = Unit(Enumerable.Range(0, 512).Select(i => (float)Math.Sin(seed + i * 1.7)).ToArray());
                return (randn(1, dim), seed == 40 ? Unit(near) : far);
            };
            foreach (var m in latent.Engine.Executor.Run(() => stage.Process(crops, CancellationToken.None))) m.Dispose();
            var id = Assert.Single(stage.Identities);
            var rejected = Assert.Single(id.Rejected);
            Assert.Equal(40, rejected.Seed);
            Assert.True(rejected.MaxSimilarity > 0.99);
            Assert.Equal(LatentFaceStage.CandidateSeed(40, 1, 1), id.Seed);
        }
        finally { foreach (var c in crops) c.Crop.Dispose(); }
    }

    [Fact]
    public async Task IdentityPhoto_IsEncodedOnce_AndEveryTrackWearsIt()
    {
        Assert.SkipWhen(Skip != null, Skip ?? "");
        using var tmp = new TempDir();
        var photo = TestPaths.Identity("photo_s1.jpg");
        var report = await latent.Engine.AnonymizeAsync(clips.Face, tmp.File("out.mp4"),
            LatentEngine.Options(new LatentOptions { Identity = photo }), ct: TestContext.Current.CancellationToken);
        var id = Assert.Single(report.Identities);
        Assert.Equal("photo", id.Kind);
        Assert.Equal(photo, id.Photo);
        Assert.All(report.FrameRecords.SelectMany(f => f.Faces).Where(f => f.Audit != null), f => Assert.NotNull(f.Audit!.SimilarityToTarget));
    }

    [Fact]
    public void FaceImageService_FindsTheFaceOfATightlyCroppedPortrait()
    {
        var faces = latent.Engine.Faces(DetectorKind.Hog, 0.5f);
        using var photo = FaceImageService.ReadImage(TestPaths.Identity("photo_s1.jpg"), "photo");
        var (face, _) = faces.Largest(photo, "photo_s1");
        // The detector's own box, cut out: no context left around the face.
        var box = face.Box.Clip(photo.Width, photo.Height).ToRect();
        using var tight = new Mat(photo, box).Clone();
        var found = faces.Find(tight);
        Assert.NotEmpty(found);
        // Same landmarks as in the whole photo, within a few pixels, in the crop's coordinates.
        var expected = face.Landmarks.Points.Select(p => new Point2f(p.X - box.X, p.Y - box.Y)).ToArray();
        var mean = found[0].Landmarks.Points.Zip(expected, (a, b) => Math.Sqrt((a.X - b.X) * (a.X - b.X) + (a.Y - b.Y) * (a.Y - b.Y))).Average();
        Assert.True(mean < 0.1 * box.Width, $"landmarks {mean:F1} px from the whole photo's");
    }

    [Fact]
    public async Task BadLatentInput_FailsBeforeAnyOutput()
    {
        Assert.SkipWhen(Skip != null, Skip ?? "");
        using var tmp = new TempDir();
        var ct = TestContext.Current.CancellationToken;
        var output = tmp.File("out.mp4");
        var noFace = tmp.File("noface.png");
        Tool.Ffmpeg("-f", "lavfi", "-i", "testsrc=size=320x240", "-frames:v", "1", noFace);
        var notImage = tmp.File("notimage.jpg");
        File.WriteAllText(notImage, "not a picture");
        foreach (var (identity, expected) in new[]
                 {
                     ("/nonexistent/face.jpg", "identity photo not found"),
                     (notImage, "not a readable image"),
                     (noFace, "no face found"),
                     ("seed:x", "not a valid identity seed"),
                 })
        {
            var e = await Assert.ThrowsAsync<PipelineException>(() =>
                latent.Engine.AnonymizeAsync(clips.Face, output, LatentEngine.Options(new LatentOptions { Identity = identity }), ct: ct));
            Assert.Contains(expected, e.Message);
            Assert.DoesNotContain('\n', e.Message);
            Assert.False(File.Exists(output));
        }
        var missing = await Assert.ThrowsAsync<PipelineException>(() => latent.Engine.AnonymizeAsync(clips.Face, output,
            LatentEngine.Options() with { Latent = new LatentOptions { Weights = LatentEngine.Small with { RandomWeights = false } } }, ct: ct));
        Assert.Contains("missing", missing.Message);
        foreach (var role in new[] { "G ", "E_id ", "E_attr ", "M " }) Assert.Contains(role, missing.Message);
        Assert.Contains("deid models import", missing.Message);
        Assert.False(File.Exists(output));
        Assert.Empty(Directory.GetFiles(tmp.Path).Where(f => f.Contains("out", StringComparison.Ordinal)));
    }

    [Fact]
    public void MisShapedWeights_NameTheFileAndTheTensor()
    {
        using var tmp = new TempDir();
        using (var m = new Deid.Models.Mapping.M(100, [32, 16]))
            LatentWeights.SaveMapper(tmp.File(LatentWeights.MapperFile), m);
        var bad = new Dictionary<string, Tensor> { ["layers.0.weight"] = zeros(32, 99), ["layers.0.bias"] = zeros(32), ["layers.1.weight"] = zeros(16, 32), ["layers.1.bias"] = zeros(16) };
        var meta = Deid.Models.Weights.SafeTensors.Open(tmp.File(LatentWeights.MapperFile));
        var md = meta.Metadata.ToDictionary();
        meta.Dispose();
        Deid.Models.Weights.SafeTensors.Save(tmp.File(LatentWeights.MapperFile), bad, md);
        var e = Assert.Throws<Deid.Models.Weights.WeightsException>(() => LatentWeights.LoadMapper(tmp.File(LatentWeights.MapperFile)));
        Assert.Contains(LatentWeights.MapperFile, e.Message);
        Assert.Contains("layers.0.weight", e.Message);
        foreach (var t in bad.Values) t.Dispose();
    }
}
