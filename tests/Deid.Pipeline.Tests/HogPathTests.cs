using Deid.Faces;
using Deid.Media;
using Deid.TestSupport;
using OpenCvSharp;

namespace Deid.Pipeline.Tests;

/// <summary>The HOG detect path after issue 13's speed work: privacy first (coverage kept, a new face handled at once).</summary>
public class HogPathTests
{
    /// <summary>
    /// A face cut into a faceless clip from frame K on (ffmpeg overlay, enable='gte(n,K)') is handled in frame K
    /// itself, not a frame later: the stream finder searches every area that changed (frame 7 is not a full-scan frame).
    /// </summary>
    [Fact]
    public async Task AFaceCutInMidClip_IsHandledFromItsFirstFrame()
    {
        const int k = 7;
        using var tmp = new TempDir();
        var input = tmp.File("cut_in.mp4");
        Tool.Ffmpeg("-f", "lavfi", "-i", "color=c=gray:s=480x360:r=25:d=0.6", "-i", TestPaths.Video("talk_small.mp4"), "-filter_complex",
            $"[1:v]scale=240:-2,setpts=PTS-STARTPTS[f];[0:v][f]overlay=x=200:y=30:enable='gte(n,{k})':shortest=1,format=yuv420p[v]",
            "-map", "[v]", "-frames:v", "15", "-c:v", "libx264", "-crf", "18", "-preset", "veryfast", input);
        var output = tmp.File("out.mp4");
        var report = await Anonymizer.RunAsync(input, output, new AnonymizeOptions { Workers = 2, BatchSize = 4 },
            ct: TestContext.Current.CancellationToken);

        Assert.Equal(15, (int)report.Frames);
        foreach (var f in report.FrameRecords.Where(f => f.Index < k)) Assert.Empty(f.Faces);
        var first = Assert.Single(report.FrameRecords.Single(f => f.Index == k).Faces);
        Assert.Equal(FaceHandling.Replaced, first.Handling);
        foreach (var f in report.FrameRecords.Where(f => f.Index >= k)) Assert.NotEmpty(f.Faces);

        // And its pixels were changed in that frame: the blurred head differs from the source there.
        using var a = new VideoReader(input);
        using var b = new VideoReader(output);
        using var fa = a.ReadFrames().Skip(k).First();
        using var fb = b.ReadFrames().Skip(k).First();
        var box = first.Box.Clip(fa.Image.Width, fa.Image.Height).ToRect();
        using var diff = new Mat();
        Cv2.Absdiff(new Mat(fa.Image, box), new Mat(fb.Image, box), diff);
        Assert.True(Cv2.Mean(diff).Val0 > 8, $"face region barely changed in frame {k}: mean |diff| {Cv2.Mean(diff).Val0:F1}");
    }

    /// <summary>
    /// Grey, shrink, pad (the finder now) finds every face that pad, shrink, grey (the path it replaced) found, in the
    /// same place, on a few frames of every shared clip.
    /// </summary>
    [Theory]
    [InlineData("talk_small.mp4")]
    [InlineData("talk_d3.mp4")]
    [InlineData("talk_d13_portrait_noaudio.mp4")]
    [InlineData("wide_s13.mp4")]
    [InlineData("talk_1080p.mp4")]
    public void HogFinder_FindsWhatThePreviousPathFound(string clip)
    {
        var info = MediaProbe.Probe(TestPaths.Video(clip));
        using var finder = new HogFaceFinder();
        using var previous = new DlibFaceDetector(maxSide: HogFaceFinder.MaxScanSide);
        foreach (var at in FrameGrabber.EvenTimes(info, 2))
        {
            using var frame = FrameGrabber.Grab(info, at);
            Assert.NotNull(frame);
            var pad = (int)Math.Round(HogFaceFinder.EdgePadFraction * Math.Max(frame.Width, frame.Height));
            using var padded = new Mat();
            Cv2.CopyMakeBorder(frame, padded, pad, pad, pad, pad, BorderTypes.Constant, Scalar.All(0));
            var before = previous.Detect(padded).Select(b => b with { Left = b.Left - pad, Right = b.Right - pad, Top = b.Top - pad, Bottom = b.Bottom - pad }).ToList();
            var now = finder.Find(frame);
            Assert.NotEmpty(before);
            foreach (var old in before)
                Assert.True(now.Any(n => FaceBox.IoU(n, old) >= 0.6), $"{clip} at {at}: the face at {old} is no longer found (found: {string.Join(", ", now)})");
        }
    }
}
