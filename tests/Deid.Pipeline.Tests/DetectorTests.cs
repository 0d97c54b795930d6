using Deid.Faces;
using Deid.Models.FaceApi;
using Deid.TestSupport;

namespace Deid.Pipeline.Tests;

/// <summary>The detect stage with face-api's SSD detector, alone and together with dlib's HOG.</summary>
public class DetectorTests(Clips clips)
{
    private static string FaceApiDir => TestPaths.FaceApiModels;

    private static void RequireSsdWeights()
    {
        if (TestPaths.MissingFaceApiWeights(SsdMobilenetv1.ManifestName) is { } why) Assert.Skip(why);
    }

    [Theory]
    [InlineData(DetectorKind.Ssd)]
    [InlineData(DetectorKind.Both)]
    public async Task Detector_HandlesTheFaceInEveryFrame(DetectorKind kind)
    {
        RequireSsdWeights();
        using var tmp = new TempDir();
        var output = tmp.File("out.mp4");
        var report = await Anonymizer.RunAsync(clips.Face, output, new AnonymizeOptions { Workers = 2, BatchSize = 4, Detector = kind, ModelDir = TestPaths.Models },
            ct: TestContext.Current.CancellationToken);
        var frames = Tool.CountFrames(clips.Face);
        Assert.Equal(frames, Tool.CountFrames(output));
        Assert.Equal(frames, (int)report.Frames);
        foreach (var f in report.FrameRecords)
        {
            // One person on screen: exactly one face, found (not extrapolated) and replaced through its landmarks.
            var face = Assert.Single(f.Faces);
            Assert.Equal(FaceHandling.Replaced, face.Handling);
        }
        Assert.Equal(0, report.FallbackBlurred);
        using var json = System.Text.Json.JsonDocument.Parse(report.ToJson());
        Assert.Equal(kind.ToString().ToLowerInvariant(), json.RootElement.GetProperty("detector").GetString());
        Assert.Equal(SsdMobilenetv1.DefaultMinConfidence, json.RootElement.GetProperty("minConfidence").GetSingle());
    }

    [Fact]
    public async Task Ssd_MissingWeights_FailsClearlyBeforeAnyOutput()
    {
        using var tmp = new TempDir();
        var output = tmp.File("out.mp4");
        var e = await Assert.ThrowsAsync<PipelineException>(() => Anonymizer.RunAsync(clips.Face, output,
            new AnonymizeOptions { Detector = DetectorKind.Ssd, ModelDir = tmp.Path }, ct: TestContext.Current.CancellationToken));
        Assert.Contains("deid models fetch", e.Message);
        Assert.False(File.Exists(output));
    }

    /// <summary>An engine given a model store finds the SSD weights in its face-api folder, as it finds the recognizer at its root.</summary>
    [Fact]
    public void Engine_OnAModelStore_LoadsSsdFromItsFaceApiFolder()
    {
        RequireSsdWeights();
        using var engine = new DeidEngine(modelDir: TestPaths.Models);
        Assert.NotNull(engine.Ssd);
        Assert.Equal(1, engine.Loads);
        // The face-api folder itself is no store: nothing is looked up one level too deep.
        using var wrong = new DeidEngine(modelDir: FaceApiDir);
        var e = Assert.Throws<PipelineException>(() => wrong.Ssd);
        Assert.Contains(Path.Combine(FaceApiDir, "face-api"), e.Message);
    }

    /// <summary>
    /// The finder searches the whole frame and its windows in one device call; each square's finds are those of
    /// the network on that square alone, and reruns give the same boxes.
    /// </summary>
    [Fact]
    public void Ssd_SearchesFrameAndWindowsInOneDeviceCall_Deterministically()
    {
        RequireSsdWeights();
        using var tmp = new TempDir();
        var frame0 = tmp.File("frame0.png");
        Tool.Ffmpeg("-i", TestPaths.Video("talk_1080p.mp4"), "-frames:v", "1", frame0);
        using var ssd = SsdMobilenetv1.Load(FaceApiDir);
        var device = new DeviceExecutor();
        using var finder = new SsdFaceFinder(ssd, device);
        using var image = OpenCvSharp.Cv2.ImRead(frame0);
        var first = finder.FindRaw(image);
        Assert.Equal(1, device.Calls);
        Assert.Equal(first, finder.FindRaw(image));
        // A window that holds the face whole, searched alone as an image of its own, gives the finder's box.
        var face = Assert.Single(first);
        var win = SsdFaceFinder.Windows(image.Width, image.Height).First(w => w.X + 8 <= face.X && face.Right + 8 <= w.Right);
        using var crop = new OpenCvSharp.Mat(image, win);
        using var small = crop.Resize(new OpenCvSharp.Size(SsdMobilenetv1.InputSize, SsdMobilenetv1.InputSize), 0, 0, OpenCvSharp.InterpolationFlags.Area);
        using var rgb = small.CvtColor(OpenCvSharp.ColorConversionCodes.BGR2RGB);
        var bytes = new byte[rgb.Width * rgb.Height * 3];
        System.Runtime.InteropServices.Marshal.Copy(rgb.Data, bytes, 0, bytes.Length);
        using var t = TorchSharp.torch.tensor(bytes, new long[] { 1, rgb.Height, rgb.Width, 3 }, TorchSharp.torch.ScalarType.Byte).permute(0, 3, 1, 2);
        var alone = Assert.Single(ssd.Detect(t)[0]);
        var scale = (float)win.Width / SsdMobilenetv1.InputSize;
        Assert.Equal(win.X + alone.X * scale, face.X, 0.5f);
        Assert.Equal(alone.Width * scale, face.Width, 0.5f);
        Assert.Equal(alone.Score, face.Score, 1e-4f);
    }

    [Theory]
    [InlineData(0f)]
    [InlineData(1f)]
    [InlineData(float.NaN)]
    public async Task MinConfidence_OutsideTheOpenUnitInterval_IsRejectedBeforeAnyOutput(float threshold)
    {
        using var tmp = new TempDir();
        var output = tmp.File("out.mp4");
        var e = await Assert.ThrowsAsync<PipelineException>(() => Anonymizer.RunAsync(clips.Face, output,
            new AnonymizeOptions { Detector = DetectorKind.Ssd, ModelDir = TestPaths.Models, MinConfidence = threshold }, ct: TestContext.Current.CancellationToken));
        Assert.Contains("min confidence", e.Message);
        Assert.False(File.Exists(output));
    }

    [Fact]
    public void Union_KeepsEveryFaceEitherFinds_AndMergesOverlaps()
    {
        var hog = new List<FaceBox> { new(100, 100, 200, 200, 1) };
        var ssd = new List<FaceBox> { new(105, 110, 205, 215, 0.9f), new(400, 100, 480, 190, 0.6f) };
        var merged = UnionFaceFinder.Merge(hog, ssd);
        Assert.Equal(2, merged.Count);
        Assert.Equal(hog[0], merged[0]);   // the overlapping pair keeps dlib's framing
        Assert.Equal(ssd[1], merged[1]);
        Assert.Equal(ssd, UnionFaceFinder.Merge([], ssd));
        Assert.Equal(hog, UnionFaceFinder.Merge(hog, []));
    }

    [Theory]
    [InlineData(1920, 1080, 3)]
    [InlineData(720, 1280, 3)]
    [InlineData(2000, 1000, 3)]
    [InlineData(1400, 1000, 2)]
    [InlineData(4000, 500, 15)]
    public void SsdWindows_CoverTheFrame_OverlappingByHalfASide(int width, int height, int count)
    {
        var windows = SsdFaceFinder.Windows(width, height);
        Assert.Equal(count, windows.Count);
        int side = Math.Min(width, height);
        Assert.All(windows, w => { Assert.Equal(side, w.Width); Assert.Equal(side, w.Height); });
        Assert.All(windows, w => Assert.True(w.X >= 0 && w.Y >= 0 && w.Right <= width && w.Bottom <= height));
        bool wide = width >= height;
        var starts = windows.Select(w => wide ? w.X : w.Y).ToList();
        Assert.Equal(0, starts[0]);
        Assert.Equal(Math.Max(width, height) - side, starts[^1]);
        // Consecutive windows overlap by at least half a side: every face up to half a side wide is whole in one.
        Assert.All(starts.Zip(starts.Skip(1)), p => Assert.True(p.Second - p.First <= side / 2.0 + 0.5, $"step {p.Second - p.First} for side {side}"));
    }

    [Theory]
    [InlineData(512, 512)]
    [InlineData(1200, 1000)]
    [InlineData(1000, 1240)]
    public void SsdWindows_NoneForNearSquareFrames(int width, int height) => Assert.Empty(SsdFaceFinder.Windows(width, height));

    /// <summary>
    /// A region is searched in an input just its shrunk size plus the black margin, in whole network cells: a wide
    /// frame's whole-frame pass skips the black below it, a square window fills the 512² input, and the work counts
    /// pixels.
    /// </summary>
    [Fact]
    public void SsdTiles_AreTheirRegionsSizePlusTheMargin_InWholeCells()
    {
        var wide = SsdTile.Fit(new OpenCvSharp.Rect(0, 0, 1920, 1080));
        Assert.Equal(new OpenCvSharp.Size(512, 288), wide.Placed);
        Assert.Equal(new OpenCvSharp.Size(512, 320), wide.Input);
        var window = SsdTile.Fit(new OpenCvSharp.Rect(420, 0, 1080, 1080));
        Assert.Equal(new OpenCvSharp.Size(512, 512), window.Input);
        Assert.Equal(1.0, window.Work);
        var part = SsdTile.Part(new OpenCvSharp.Rect(10, 20, 300, 200), 0.5);
        Assert.Equal(new OpenCvSharp.Size(150, 100), part.Placed);
        Assert.Equal(new OpenCvSharp.Size(192, 160), part.Input);
        Assert.Equal(192.0 * 160 / (512 * 512), part.Work, 1e-9);
        // Never enlarged; a region too large for one input at that scale is the caller's error.
        Assert.Equal(new OpenCvSharp.Size(40, 30), SsdTile.Part(new OpenCvSharp.Rect(0, 0, 40, 30), 2).Placed);
        Assert.Throws<ArgumentException>(() => SsdTile.Part(new OpenCvSharp.Rect(0, 0, 1200, 100), 0.5));
        Assert.Equal(0.625 + 3, SsdFaceFinder.FullSearchWork(1920, 1080), 1e-9);
    }

    [Fact]
    public void SsdMerge_KeepsTheStrongerOfOverlappingFinds()
    {
        var frame = new SsdFace(100, 100, 80, 110, 0.4f);
        var window = new SsdFace(102, 98, 82, 112, 0.9f);
        var other = new SsdFace(400, 100, 60, 70, 0.6f);
        var merged = SsdFaceFinder.Merge([frame, other, window]);
        Assert.Equal(new[] { window, other }, merged);
    }

    /// <summary>
    /// talk_1080p's first frames: in the whole 16:9 frame the speaker's face scores 0.31 (under SSD's 0.5); the square
    /// windows find it, and the whole first second is handled face by face.
    /// </summary>
    [Fact]
    public async Task Ssd_FindsTheFaceInAWideFrame_ThroughSquareWindows()
    {
        RequireSsdWeights();
        using var tmp = new TempDir();
        var clip = tmp.File("wide.mp4");
        Tool.Ffmpeg("-i", TestPaths.Video("talk_1080p.mp4"), "-t", "0.5", "-an", "-c:v", "libx264", "-crf", "18", "-preset", "veryfast", clip);
        var frame0 = tmp.File("frame0.png");
        Tool.Ffmpeg("-i", clip, "-frames:v", "1", frame0);

        using var ssd = SsdMobilenetv1.Load(FaceApiDir);
        using var finder = new SsdFaceFinder(ssd, new DeviceExecutor());
        using var image = OpenCvSharp.Cv2.ImRead(frame0);
        var face = Assert.Single(finder.FindRaw(image));
        // The speaker sits left of centre (face-api's box in a square crop of this frame: about 849,202 232x323).
        Assert.InRange(face.X + face.Width / 2, 900, 1030);
        Assert.InRange(face.Y + face.Height / 2, 300, 430);
        Assert.InRange(face.Width, 200, 270);
        Assert.True(face.Score >= SsdMobilenetv1.DefaultMinConfidence);
        // The threshold is the finder's: just above this face's score it is gone, just below it is found.
        if (face.Score < 0.99f)
        {
            using var strict = new SsdFaceFinder(ssd, new DeviceExecutor(), face.Score + 0.005f);
            Assert.Empty(strict.FindRaw(image));
        }
        using var lenient = new SsdFaceFinder(ssd, new DeviceExecutor(), face.Score - 0.005f);
        Assert.Single(lenient.FindRaw(image));

        var report = await Anonymizer.RunAsync(clip, tmp.File("out.mp4"),
            new AnonymizeOptions { Workers = 2, Detector = DetectorKind.Ssd, ModelDir = TestPaths.Models }, ct: TestContext.Current.CancellationToken);
        Assert.Equal(Tool.CountFrames(clip), (int)report.Frames);
        Assert.All(report.FrameRecords, f => Assert.Equal(FaceHandling.Replaced, Assert.Single(f.Faces).Handling));
    }

    [Fact]
    public void SsdBox_MapsToDlibFraming()
    {
        var b = SsdFaceFinder.ToDlibBox(new SsdFace(100, 100, 80, 110, 0.9f));
        var (dx, dy, sw, sh) = SsdFaceFinder.DlibFromSsd;
        Assert.Equal(140 + 80 * dx, b.CenterX, 3);
        Assert.Equal(155 + 110 * dy, b.CenterY, 3);
        Assert.Equal(80 * sw, b.Width, 3);
        Assert.Equal(110 * sh, b.Height, 3);
        Assert.Equal(0.9f, b.Score);
    }

    [Fact]
    public void DetectorNames_Parse()
    {
        Assert.Equal(DetectorKind.Hog, FaceFinderFactory.Parse("HOG"));
        Assert.Equal(DetectorKind.Ssd, FaceFinderFactory.Parse("ssd"));
        Assert.Equal(DetectorKind.Both, FaceFinderFactory.Parse(" both "));
        Assert.Throws<ArgumentException>(() => FaceFinderFactory.Parse("mtcnn"));
    }
}
