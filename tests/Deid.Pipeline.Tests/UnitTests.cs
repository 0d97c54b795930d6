using Deid.Faces;
using Deid.Pipeline;
using OpenCvSharp;

namespace Deid.Pipeline.Tests;

public class OneEuroFilterTests
{
    [Fact]
    public void ConstantInputStaysConstant_AndJitterIsReduced()
    {
        var f = new OneEuroFilter(minCutoff: 1.0, beta: 0.0);
        Assert.Equal(5.0, f.Filter(5.0, 0.0));
        for (var i = 1; i < 10; i++) Assert.Equal(5.0, f.Filter(5.0, i / 30.0), 9);

        var rnd = new Random(1);
        var g = new OneEuroFilter(minCutoff: 1.0, beta: 0.0);
        double rawVar = 0, filtVar = 0;
        for (var i = 0; i < 300; i++)
        {
            var x = 100 + (rnd.NextDouble() - 0.5) * 4;
            var y = g.Filter(x, i / 30.0);
            if (i < 30) continue;
            rawVar += (x - 100) * (x - 100);
            filtVar += (y - 100) * (y - 100);
        }
        Assert.True(filtVar < rawVar / 4, $"filtered variance {filtVar} vs raw {rawVar}");
    }

    [Fact]
    public void FastMotionHasLittleLag_WithBeta()
    {
        var slow = new OneEuroFilter(1.0, 0.0);
        var adaptive = new OneEuroFilter(1.0, 0.05);
        double s = 0, a = 0;
        for (var i = 0; i < 30; i++) { s = slow.Filter(i * 20.0, i / 30.0); a = adaptive.Filter(i * 20.0, i / 30.0); }
        var truth = 29 * 20.0;
        Assert.True(Math.Abs(truth - a) < Math.Abs(truth - s) / 2, $"adaptive lag {truth - a}, fixed lag {truth - s}");
    }

    [Fact]
    public void ResetStartsOver()
    {
        var f = new OneEuroFilter();
        f.Filter(0, 0); f.Filter(0, 0.033);
        f.Reset();
        Assert.Equal(50.0, f.Filter(50.0, 0.066));
    }

    [Fact]
    public void LandmarkSmootherFiltersEachCoordinate()
    {
        var s = new LandmarkSmoother();
        var first = s.Filter([new Point2f(1, 2), new Point2f(3, 4)], 0);
        Assert.Equal(new Point2f(1, 2), first[0]);
        var next = s.Filter([new Point2f(11, 2), new Point2f(3, 14)], 1 / 30.0);
        Assert.InRange(next[0].X, 1.01f, 10.99f);
        Assert.Equal(2f, next[0].Y, 4);
        Assert.Equal(3f, next[1].X, 4);
        Assert.InRange(next[1].Y, 4.01f, 13.99f);
    }
}

public class ReorderBufferTests
{
    [Fact]
    public void ReleasesItemsInSequenceOrder()
    {
        var b = new ReorderBuffer<string>();
        Assert.Empty(b.Add(2, "c"));
        Assert.Empty(b.Add(1, "b"));
        Assert.Equal(["a", "b", "c"], b.Add(0, "a"));
        Assert.Equal(["d"], b.Add(3, "d"));
        Assert.Empty(b.Add(5, "f"));
        Assert.Equal(1, b.PendingCount);
        Assert.Equal(["f"], b.Drain());
        Assert.Throws<InvalidOperationException>(() => b.Add(1, "again"));
    }

    [Fact]
    public void ShuffledInputComesOutSorted()
    {
        var order = Enumerable.Range(0, 200).OrderBy(_ => Random.Shared.Next()).ToList();
        var b = new ReorderBuffer<int>();
        var outp = new List<int>();
        foreach (var i in order) outp.AddRange(b.Add(i, i));
        Assert.Equal(Enumerable.Range(0, 200), outp);
    }
}

public class FaceTrackerTests
{
    private static FaceLandmarks Marks(float cx, float cy) =>
        new(Enumerable.Range(0, FaceLandmarks.Count).Select(i => new Point2f(cx + (i % 10) * 4 - 18, cy + (i / 10) * 6 - 18)).ToArray());

    private static FaceDetection Det(float cx, float cy, float size = 80, bool landmarks = true) =>
        new(new FaceBox(cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2, 1), landmarks ? Marks(cx, cy) : null);

    [Fact]
    public void TwoMovingFacesKeepTheirIds()
    {
        var t = new FaceTracker(5);
        for (var f = 0; f < 30; f++)
        {
            // Detector order flips every frame: ids must follow the faces, not the list order.
            var a = Det(100 + f * 3, 200);
            var b = Det(400 - f * 2, 220);
            var faces = t.Update(f % 2 == 0 ? [a, b] : [b, a], f / 30.0);
            Assert.Equal(2, faces.Count);
            Assert.All(faces, x => Assert.Equal(FaceHandling.Replaced, x.Handling));
            var left = faces.MinBy(x => x.Box.CenterX)!;
            var right = faces.MaxBy(x => x.Box.CenterX)!;
            Assert.Equal(1, left.TrackId);
            Assert.Equal(2, right.TrackId);
        }
        Assert.Equal(2, t.TracksCreated);
    }

    [Fact]
    public void MissedFaceIsTrackedThenFallbackBlurredThenDropped()
    {
        const int k = 3;
        var t = new FaceTracker(k);
        for (var f = 0; f < 5; f++) t.Update([Det(100 + f * 4, 100)], f / 30.0);
        var handled = new List<FaceHandling>();
        for (var f = 5; f < 5 + 2 * k + 2; f++)
        {
            var faces = t.Update([], f / 30.0);
            Assert.True(faces.Count <= 1);
            if (faces.Count == 1) { Assert.Equal(1, faces[0].TrackId); handled.Add(faces[0].Handling); }
        }
        Assert.Equal(Enumerable.Repeat(FaceHandling.Tracked, k).Concat(Enumerable.Repeat(FaceHandling.FallbackBlurred, k)), handled);
        Assert.Equal(0, t.ActiveTracks);
    }

    [Fact]
    public void TrackedLandmarksContinueTheMotion()
    {
        var t = new FaceTracker(5);
        for (var f = 0; f < 10; f++) t.Update([Det(100 + f * 10, 100)], f / 30.0);
        var last = t.Update([Det(190, 100)], 9.5 / 30.0);
        var tracked = t.Update([], 10 / 30.0).Single();
        Assert.Equal(FaceHandling.Tracked, tracked.Handling);
        Assert.NotNull(tracked.Landmarks);
        Assert.True(tracked.Box.CenterX > last[0].Box.CenterX, "extrapolation should keep moving right");
    }

    [Fact]
    public void FaceComingBackWithinWindowKeepsItsId_FarAwayFaceGetsANewOne()
    {
        var t = new FaceTracker(5);
        t.Update([Det(100, 100)], 0);
        t.Update([], 1 / 30.0);
        t.Update([], 2 / 30.0);
        Assert.Equal(1, t.Update([Det(104, 100)], 3 / 30.0).Single(f => f.Handling == FaceHandling.Replaced).TrackId);
        var faces = t.Update([Det(104, 100), Det(600, 100)], 4 / 30.0);
        Assert.Equal([1, 2], faces.Select(f => f.TrackId).Order());
    }

    [Fact]
    public void CrossingFacesKeepBothIds_WhereBestPairFirstWouldStartANewTrack()
    {
        var t = new FaceTracker(5);
        t.Update([Det(200, 200, 100), Det(300, 200, 100)], 0);
        // The detection at 235 is the best single match for track 1 (score 1.13 vs 1.03), but taking it leaves
        // track 2 with nothing eligible; the optimal assignment gives 160→1 and 235→2.
        var faces = t.Update([Det(235, 200, 100), Det(160, 200, 100)], 1 / 30.0);
        Assert.Equal(2, t.TracksCreated);
        Assert.Equal(1, faces.Single(f => f.Box.CenterX < 200).TrackId);
        Assert.Equal(2, faces.Single(f => f.Box.CenterX > 200).TrackId);
        Assert.All(faces, f => Assert.Equal(FaceHandling.Replaced, f.Handling));
    }

    [Fact]
    public void DetectionWithoutLandmarksIsFallbackBlurred()
    {
        var t = new FaceTracker(5);
        var f = t.Update([Det(100, 100, landmarks: false)], 0).Single();
        Assert.Equal(FaceHandling.FallbackBlurred, f.Handling);
        Assert.Null(f.Landmarks);
    }
}

public class FaceStageTests
{
    [Fact]
    public void BuiltInStagesReturnOneSameSizedCropPerInput()
    {
        foreach (var stage in new IFaceStage[] { new BlurStage(4), new PixelateStage(4), new PassthroughStage(4) })
        {
            using var _ = stage;
            using var a = new Mat(64, 64, MatType.CV_8UC3, Scalar.All(0));
            using var b = new Mat(64, 64, MatType.CV_8UC3, Scalar.All(0));
            // A sharp pattern: blur and pixelate must change it, passthrough must not.
            for (var y = 0; y < 64; y++) for (var x = 0; x < 64; x++)
                    if (((x / 2) + (y / 2)) % 2 == 0) { a.Set(y, x, new Vec3b(255, 255, 255)); b.Set(y, x, new Vec3b(255, 255, 255)); }
            using var before = a.Clone();
            var outs = stage.Process([new FaceCrop(0, 1, a), new FaceCrop(0, 2, b)], CancellationToken.None);
            Assert.Equal(2, outs.Count);
            Assert.All(outs, o => Assert.Equal(new Size(64, 64), o.Size()));
            using var diff = new Mat();
            Cv2.Absdiff(before, outs[0], diff);
            var changed = Cv2.Mean(diff).Val0;
            if (stage is PassthroughStage) Assert.Equal(0, changed);
            else Assert.True(changed > 20, $"{stage.Name} changed the crop by only {changed}");
            Assert.Equal(4, stage.BatchSize);
        }
    }

    [Fact]
    public void FactoryHonoursMode_AndLeavesLatentToTheEngine()
    {
        using var s1 = FaceStages.Create(new AnonymizeOptions { Mode = AnonymizeMode.Pixelate, BatchSize = 3 });
        Assert.Equal("pixelate", s1.Name);
        Assert.Equal(3, s1.BatchSize);
        Assert.False(s1.ReplacesIdentity);
        Assert.Throws<PipelineException>(() => FaceStages.Create(new AnonymizeOptions { Mode = AnonymizeMode.Latent }));
    }
}

public class AnonymizeReportTests
{
    /// <summary>The frame records go to a spool file, not memory: every field must come back as it went in, in order.</summary>
    [Fact]
    public void FrameRecordsRoundTripThroughTheSpool_AndTheJsonListsThemAll()
    {
        using var report = new AnonymizeReport { Input = "in.mp4", Output = "out.mp4" };
        var expected = new List<FrameRecord>();
        var rng = new Random(5);
        // enough frames to cross the spool's flush size several times; one frame with many faces crosses a read chunk
        for (var i = 0; i < 6000; i++)
        {
            var n = i == 3001 ? 3000 : rng.Next(3);
            var faces = Enumerable.Range(0, n).Select(k => new FaceRecord(k + 1,
                new Deid.Faces.FaceBox(rng.NextSingle() * 100, rng.NextSingle() * 100, 100 + rng.NextSingle(), 200 + rng.NextSingle(), rng.NextSingle()),
                (FaceHandling)rng.Next(3),
                rng.Next(3) switch
                {
                    0 => null,
                    1 => new FaceAudit(rng.NextDouble(), null, AuditAction.Passed),
                    _ => new FaceAudit(rng.NextDouble(), rng.NextDouble(), AuditAction.Blurred, rng.NextDouble()),
                })).ToArray();
            var frame = new FrameRecord(i, i / 30.0, faces, Damaged: i % 7 == 3);
            expected.Add(frame);
            report.AddFrame(frame);
        }
        Assert.Equal(expected.Count, report.Frames);
        Assert.Equal(expected.Sum(f => f.Faces.Count), report.Faces);
        // read twice, side by side: each enumeration is independent
        var again = report.FrameRecords.GetEnumerator();
        foreach (var (want, got) in expected.Zip(report.FrameRecords))
        {
            Assert.True(again.MoveNext());
            Assert.Equal(want.Index, got.Index);
            Assert.Equal(want.Time, got.Time);
            Assert.Equal(want.Damaged, got.Damaged);
            Assert.Equal(want.Faces, got.Faces);
            Assert.Equal(want.Faces, again.Current.Faces);
        }
        Assert.False(again.MoveNext());
        Assert.Equal(expected.Count, report.FrameRecords.Count());

        using var json = System.Text.Json.JsonDocument.Parse(report.ToJson());
        var frames = json.RootElement.GetProperty("frames");
        Assert.Equal(expected.Count, frames.GetArrayLength());
        Assert.Equal(3000, frames[3001].GetProperty("faces").GetArrayLength());
    }

    /// <summary>A latent report names the networks with random weights and the weights files, between the totals and the identities.</summary>
    [Fact]
    public void LatentReport_ListsRandomWeightsAndModelFiles()
    {
        using var report = new AnonymizeReport { Mode = AnonymizeMode.Latent };
        report.RandomWeights = ["E_attr", "M"];
        report.ModelFiles = new Dictionary<string, string> { ["E_id"] = "latent/e_id.pt", ["G"] = "latent/g.pt" };
        Assert.Contains("""
              "fps": 0
            },
            "randomWeights": [
              "E_attr",
              "M"
            ],
            "modelFiles": {
              "E_id": "latent/e_id.pt",
              "G": "latent/g.pt"
            },
            "identities": [],
          """, report.ToJson().ReplaceLineEndings("\n"));
        using var real = new AnonymizeReport { Mode = AnonymizeMode.Latent };
        Assert.Contains("""
            "randomWeights": [],
            "modelFiles": {},
          """, real.ToJson().ReplaceLineEndings("\n"));
        using var blur = new AnonymizeReport { Mode = AnonymizeMode.Blur };
        Assert.DoesNotContain("randomWeights", blur.ToJson());
        Assert.DoesNotContain("modelFiles", blur.ToJson());
    }
}

public class CapacityTests
{
    private static Deid.Media.VideoInfo Info(int w, int h) => new("x.mp4", w, h, 0, new(25, 1), new(25, 1), new(1, 12800),
        TimeSpan.FromSeconds(10), 250, false, "h264", []);

    /// <summary>Frames in the channels plus those the stages hold stay within the byte budget wherever the budget allows it.</summary>
    [Theory]
    [InlineData(3840, 2160, 2)]
    [InlineData(3840, 2160, 8)]
    [InlineData(1920, 1080, 2)]
    public void FramesInFlightFollowTheByteBudget(int w, int h, int workers)
    {
        var options = new AnonymizeOptions { Workers = workers, FrameMemoryMiB = 1024 };
        var (hop, waiting) = DeidEngine.Capacities(options, Info(w, h), batch: 8);
        // decode, find and landmark channels (2 each per worker, at most 2 hops), six hops, the frames behind the batcher, and those in hand
        var inFlight = 3 * Math.Min(2 * workers, 2 * hop) + 6 * hop + waiting + DeidEngine.HeldFrames(workers);
        Assert.True(inFlight * (long)w * h * 3 <= options.FrameMemoryMiB * 1024L * 1024, $"{inFlight} frames of {w}x{h}");
    }

    [Fact]
    public void SmallFramesKeepTheFullDepths()
    {
        Assert.Equal((4, 16), DeidEngine.Capacities(new AnonymizeOptions { Workers = 2 }, Info(512, 512), batch: 8));
    }
}
