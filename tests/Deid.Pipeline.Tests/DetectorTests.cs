using Deid.Faces;
using Deid.Models.FaceApi;
using Deid.TestSupport;

namespace Deid.Pipeline.Tests;

/// <summary>The detect stage with face-api's SSD detector, alone and together with dlib's HOG.</summary>
public class DetectorTests(Clips clips)
{
    private static string FaceApiDir => Path.Combine(TestPaths.Models, "face-api");

    private static void RequireSsdWeights()
    {
        if (!File.Exists(Path.Combine(FaceApiDir, SsdMobilenetv1.ManifestName)))
            Assert.Skip($"SSD weights missing in {FaceApiDir}; run `dotnet run --project src/Deid.Cli -- models fetch` (or `make setup`)");
    }

    [Theory]
    [InlineData(DetectorKind.Ssd)]
    [InlineData(DetectorKind.Both)]
    public async Task Detector_HandlesTheFaceInEveryFrame(DetectorKind kind)
    {
        RequireSsdWeights();
        using var tmp = new TempDir();
        var output = tmp.File("out.mp4");
        var report = await Anonymizer.RunAsync(clips.Face, output, new AnonymizeOptions { Workers = 2, BatchSize = 4, Detector = kind, ModelDir = FaceApiDir },
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
