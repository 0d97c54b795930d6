using Deid.Faces;
using Deid.Media;
using Deid.Models.FaceApi;
using Deid.TestSupport;
using OpenCvSharp;

namespace Deid.Pipeline.Tests;

/// <summary>
/// The stream finder searches only where a face can be that the last frames do not account for; privacy rests on it
/// finding every face the full-frame scan finds, and a new one in the frame it appears.
/// </summary>
public class StreamFinderTests
{
    /// <summary>talk_small's speaker on the left of a wider grey canvas, frame by frame (the first <paramref name="count"/> frames).</summary>
    private static List<Mat> SpeakerFrames(int count)
    {
        var frames = new List<Mat>();
        using var reader = new VideoReader(TestPaths.Video("talk_small.mp4"));
        foreach (var f in reader.ReadFrames())
        {
            using (f)
            {
                var canvas = new Mat(540, 960, MatType.CV_8UC3, Scalar.All(128));
                f.Image.CopyTo(new Mat(canvas, new Rect(20, 60, f.Image.Width, f.Image.Height)));
                frames.Add(canvas);
            }
            if (frames.Count == count) break;
        }
        return frames;
    }

    [Fact]
    public void ASecondFaceAppearingBetweenFullScans_IsFoundInItsFirstFrame()
    {
        const int k = 13; // not a multiple of FullScanEvery: a partial-search frame
        Assert.NotEqual(0, k % HogStreamFinder.FullScanEvery);
        var frames = SpeakerFrames(18);
        using var photo = Cv2.ImRead(TestPaths.Identity("photo_s1.jpg"));
        using var small = photo.Resize(new Size(300, (int)Math.Round(300.0 * photo.Height / photo.Width)));
        var at = new Rect(620, 60, small.Width, Math.Min(small.Height, 460));
        for (var i = k; i < frames.Count; i++) new Mat(small, new Rect(0, 0, at.Width, at.Height)).CopyTo(new Mat(frames[i], at));

        using var stream = new HogStreamFinder();
        using var full = new HogFaceFinder();
        try
        {
            for (var i = 0; i < frames.Count; i++)
            {
                var found = stream.Find(frames[i]);
                var byFull = full.Find(frames[i]);
                bool inPhoto(FaceBox b) => b.CenterX > at.X && b.CenterX < at.Right && b.CenterY > at.Y && b.CenterY < at.Bottom;
                if (i < k) Assert.DoesNotContain(found, inPhoto);
                else
                {
                    Assert.True(byFull.Any(inPhoto), $"frame {i}: the full scan does not find the photo's face either ({string.Join(", ", byFull)})");
                    Assert.True(found.Any(inPhoto), $"frame {i}: not found (full scan: {stream.Last.FullScan})");
                    Assert.Equal(byFull.Count, found.Count);
                }
                if (i == k) Assert.False(stream.Last.FullScan, "the new face should be found by the partial search, not a full scan");
            }
        }
        finally { foreach (var f in frames) f.Dispose(); }
    }

    [Fact]
    public void AStillFace_StaysFoundOnEveryFrame()
    {
        var frames = SpeakerFrames(1);
        using var still = frames[0];
        using var stream = new HogStreamFinder();
        var first = Assert.Single(stream.Find(still));
        for (var i = 1; i < 2 * HogStreamFinder.FullScanEvery; i++)
        {
            var found = Assert.Single(stream.Find(still));
            Assert.True(FaceBox.IoU(first, found) > 0.6, $"frame {i}: {found} moved away from {first}");
            if (i % HogStreamFinder.FullScanEvery != 0) Assert.False(stream.Last.FullScan);
        }
    }

    /// <summary>Every face the full-frame scan finds, on every frame of a stretch of each shared clip, in the same place.</summary>
    [Theory]
    [InlineData("talk_small.mp4")]
    [InlineData("talk_d3.mp4")]
    [InlineData("wide_s13.mp4")]
    [InlineData("talk_1080p.mp4")]
    public void FindsWhatTheFullScanFinds_FrameByFrame(string clip)
    {
        using var stream = new HogStreamFinder();
        using var full = new HogFaceFinder();
        using var reader = new VideoReader(TestPaths.Video(clip));
        int n = 0, partial = 0;
        foreach (var f in reader.ReadFrames())
        {
            using (f)
            {
                var found = stream.Find(f.Image);
                if (!stream.Last.FullScan) partial++;
                foreach (var b in full.Find(f.Image))
                    Assert.True(found.Any(x => FaceBox.IoU(x, b) >= 0.4), $"{clip} frame {f.Index}: the face at {b} was not found (found: {string.Join(", ", found)})");
            }
            if (++n == 40) break;
        }
        Assert.True(partial > n / 2, $"{clip}: only {partial} of {n} frames were searched partially");
    }

    [Fact]
    public void SameFrames_SameFaces()
    {
        var frames = SpeakerFrames(25);
        try
        {
            using var a = new HogStreamFinder();
            using var b = new HogStreamFinder();
            foreach (var f in frames) Assert.Equal(a.Find(f), b.Find(f));
        }
        finally { foreach (var f in frames) f.Dispose(); }
    }

    private static SsdMobilenetv1 LoadSsd()
    {
        if (TestPaths.MissingFaceApiWeights(SsdMobilenetv1.ManifestName) is { } why) Assert.Skip(why);
        return SsdMobilenetv1.Load(TestPaths.FaceApiModels);
    }

    /// <summary>The SSD stream finder: a face pasted into a wide clip between full searches is found in that frame, by the packed partial search.</summary>
    [Fact]
    public void Ssd_ASecondFaceAppearingBetweenFullScans_IsFoundInItsFirstFrame()
    {
        using var net = LoadSsd();
        const int k = 13;
        var frames = SpeakerFrames(16);
        using var photo = Cv2.ImRead(TestPaths.Identity("photo_s1.jpg"));
        using var small = photo.Resize(new Size(300, 300 * photo.Height / photo.Width));
        var at = new Rect(620, 60, small.Width, Math.Min(small.Height, 460));
        for (var i = k; i < frames.Count; i++) new Mat(small, new Rect(0, 0, at.Width, at.Height)).CopyTo(new Mat(frames[i], at));
        var device = new DeviceExecutor();
        using var stream = new SsdStreamFinder(net, device);
        using var full = new SsdFaceFinder(net, device);
        try
        {
            for (var i = 0; i < frames.Count; i++)
            {
                var found = stream.Find(frames[i]);
                bool inPhoto(FaceBox b) => b.CenterX > at.X && b.CenterX < at.Right && b.CenterY > at.Y && b.CenterY < at.Bottom;
                if (i < k) { Assert.DoesNotContain(found, inPhoto); continue; }
                Assert.True(full.Find(frames[i]).Any(inPhoto), $"frame {i}: the full search does not find the photo's face either");
                Assert.True(found.Any(inPhoto), $"frame {i}: not found (full search: {stream.Last.FullScan})");
                if (i == k) Assert.False(stream.Last.FullScan, "the new face should be found by the partial search");
            }
        }
        finally { foreach (var f in frames) f.Dispose(); }
    }

    /// <summary>Every face the full SSD search finds on talk_1080p's first frames, the stream finder finds too, in fewer passes.</summary>
    [Fact]
    public void Ssd_FindsWhatTheFullSearchFinds_InFewerPasses()
    {
        using var net = LoadSsd();
        var device = new DeviceExecutor();
        using var stream = new SsdStreamFinder(net, device);
        using var full = new SsdFaceFinder(net, device);
        using var reader = new VideoReader(TestPaths.Video("talk_1080p.mp4"));
        int n = 0;
        foreach (var f in reader.ReadFrames())
        {
            using (f)
            {
                var found = stream.Find(f.Image);
                foreach (var b in full.Find(f.Image))
                    Assert.True(found.Any(x => FaceBox.IoU(x, b) >= 0.4), $"frame {f.Index}: the face at {b} was not found (found: {string.Join(", ", found)})");
            }
            if (++n == 20) break;
        }
        var fullWork = SsdFaceFinder.FullSearchWork(1920, 1080);
        Assert.True(stream.Passes < n * fullWork / 2, $"{stream.Passes:0.0} passes' work for {n} frames (full search: {n * fullWork:0.0})");
    }

    /// <summary>A picture that does not change costs the SSD no network pass between full searches, and keeps its face.</summary>
    [Fact]
    public void Ssd_AStillPicture_NeedsNoPassBetweenFullSearches()
    {
        using var net = LoadSsd();
        var frames = SpeakerFrames(1);
        using var still = frames[0];
        using var stream = new SsdStreamFinder(net, new DeviceExecutor());
        var first = Assert.Single(stream.Find(still));
        var afterFull = stream.Passes;
        for (var i = 1; i < SsdStreamFinder.FullScanEvery; i++)
        {
            var found = Assert.Single(stream.Find(still));
            Assert.True(FaceBox.IoU(first, found) > 0.9, $"frame {i}: {found} moved away from {first}");
        }
        Assert.Equal(afterFull, stream.Passes);
    }
}
