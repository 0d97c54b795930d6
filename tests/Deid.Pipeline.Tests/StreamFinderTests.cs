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

    /// <summary>talk_d3's first frame: a face of about 300 px, which the track searches shrink to their scale.</summary>
    private static Mat LargeFace()
    {
        using var reader = new VideoReader(TestPaths.Video("talk_d3.mp4"));
        using var f = reader.ReadFrames().First();
        return f.Image.Clone();
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

    /// <summary>
    /// A tracked face is first looked for where it was at its own size; one that jumped or grew beyond that between
    /// two frames is still found in the second, by the wider search or its surroundings' at scan resolution (or a
    /// full scan, where so much of the picture changed), where the full scan finds it.
    /// </summary>
    [Theory]
    [InlineData(0.25, 0, 1.0, true)]    // beyond the near window, inside the track window
    [InlineData(0.6, 0.1, 1.0, false)]  // beyond both: the surroundings, or a full scan
    [InlineData(0, 0, 1.25, true)]      // grown beyond one pyramid level
    [InlineData(0.05, 0.05, 1.0, true)] // the common case: the near window
    public void AFaceThatMovedOrGrew_IsFoundInThatFrame(double dxFaces, double dyFaces, double scale, bool partial)
    {
        using var first = LargeFace();
        using var stream = new HogStreamFinder();
        using var full = new HogFaceFinder();
        var face = Assert.Single(stream.Find(first));
        // The whole picture moved and scaled about the face's centre.
        using var m = new Mat(2, 3, MatType.CV_64FC1);
        m.Set(0, 0, scale); m.Set(0, 1, 0.0); m.Set(0, 2, (1 - scale) * face.CenterX + dxFaces * face.Width);
        m.Set(1, 0, 0.0); m.Set(1, 1, scale); m.Set(1, 2, (1 - scale) * face.CenterY + dyFaces * face.Height);
        using var moved = new Mat();
        Cv2.WarpAffine(first, moved, m, first.Size(), InterpolationFlags.Linear, BorderTypes.Constant, Scalar.All(128));
        var expected = Assert.Single(full.Find(moved));
        var found = stream.Find(moved);
        if (partial) Assert.False(stream.Last.FullScan);
        Assert.True(found.Any(f => FaceBox.IoU(f, expected) >= 0.4), $"the face at {expected} was not found (found: {string.Join(", ", found)})");
    }

    /// <summary>
    /// A face that stays where it is, its picture changing a little (here: moved by a pixel every other frame), is
    /// searched for where it was and keeps its box size from frame to frame: no drift frame after frame.
    /// </summary>
    [Fact]
    public void AFaceThatStays_KeepsItsSize()
    {
        using var still = LargeFace();
        using var moved = new Mat();
        Cv2.CopyMakeBorder(still[new Rect(0, 0, still.Width - 1, still.Height)], moved, 0, 0, 1, 0, BorderTypes.Replicate);
        using var stream = new HogStreamFinder();
        var sizes = new List<float>();
        for (var i = 0; i < HogStreamFinder.FullScanEvery; i++)
        {
            sizes.Add(Assert.Single(stream.Find(i % 2 == 0 ? still : moved)).Width);
            if (i > 0) Assert.False(stream.Last.FullScan);
        }
        Assert.InRange(sizes.Max() / sizes.Min(), 1.0, 1.05);
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
