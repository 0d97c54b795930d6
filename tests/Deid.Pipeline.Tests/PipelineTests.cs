using System.Text.Json;
using Deid.Faces;
using Deid.Media;
using Deid.TestSupport;
using OpenCvSharp;

namespace Deid.Pipeline.Tests;

public class PipelineTests(Clips clips)
{
    private static readonly AnonymizeOptions Fast = new() { Workers = 2, BatchSize = 4 };

    private static int AudioPackets(string path)
    {
        var r = Tool.Run("ffprobe", "-v", "error", "-select_streams", "a:0", "-count_packets", "-show_entries", "stream=nb_read_packets", "-of", "csv=p=0", path);
        return int.Parse(r.StdOut.Trim().Split('\n')[0].Trim(','));
    }

    private static string StreamValue(string path, string stream, string key)
    {
        using var doc = Tool.Probe(path);
        var s = doc.RootElement.GetProperty("streams").EnumerateArray().First(x => x.GetProperty("codec_type").GetString() == stream);
        return s.GetProperty(key).ToString();
    }

    private static double Duration(string path)
    {
        using var doc = Tool.Probe(path);
        return double.Parse(doc.RootElement.GetProperty("format").GetProperty("duration").GetString()!, System.Globalization.CultureInfo.InvariantCulture);
    }

    private static List<Mat> ReadAll(string path)
    {
        using var reader = new VideoReader(path);
        var list = new List<Mat>();
        foreach (var f in reader.ReadFrames()) using (f) list.Add(f.Image.Clone());
        return list;
    }

    private static double Sharpness(Mat frame, Rect r)
    {
        r = r.Intersect(new Rect(0, 0, frame.Width, frame.Height));
        using var roi = new Mat(frame, r);
        using var gray = new Mat();
        Cv2.CvtColor(roi, gray, ColorConversionCodes.BGR2GRAY);
        using var lap = new Mat();
        Cv2.Laplacian(gray, lap, MatType.CV_64F);
        Cv2.MeanStdDev(lap, out _, out var std);
        return std.Val0 * std.Val0;
    }

    [Fact]
    public async Task Passthrough_KeepsFrameCountRateDurationAndAudio()
    {
        using var tmp = new TempDir();
        var output = tmp.File("out.mp4");
        var report = await Anonymizer.RunAsync(clips.WithAudio, output, Fast with { Mode = AnonymizeMode.Passthrough },
            ct: TestContext.Current.CancellationToken);
        Assert.True(File.Exists(output));
        Assert.Equal(Tool.CountFrames(clips.WithAudio), Tool.CountFrames(output));
        Assert.Equal(Tool.CountFrames(clips.WithAudio), report.Frames);
        Assert.Equal(StreamValue(clips.WithAudio, "video", "r_frame_rate"), StreamValue(output, "video", "r_frame_rate"));
        Assert.Equal(Duration(clips.WithAudio), Duration(output), 1);
        Assert.Equal(AudioPackets(clips.WithAudio), AudioPackets(output));
        Assert.Equal(Tool.FrameTimes(clips.WithAudio), Tool.FrameTimes(output));
        Assert.True(report.Replaced > report.Frames / 2, $"the face should be found in most frames ({report.Replaced}/{report.Frames})");
        Assert.Equal(1, report.Tracks);
    }

    [Fact]
    public async Task Blur_BlursTheFaceInEveryFrame()
    {
        using var tmp = new TempDir();
        var output = tmp.File("out.mp4");
        var report = await Anonymizer.RunAsync(clips.Face, output, Fast, ct: TestContext.Current.CancellationToken);
        var before = ReadAll(clips.Face);
        var after = ReadAll(output);
        try
        {
            Assert.Equal(before.Count, after.Count);
            Assert.Equal(before.Count, (int)report.Frames);
            using var detector = new DlibFaceDetector();
            int detBefore = 0, detAfter = 0;
            var records = report.FrameRecords.ToList();
            for (var i = 0; i < before.Count; i++)
            {
                var faces = records[i].Faces;
                Assert.NotEmpty(faces);
                foreach (var face in faces)
                {
                    // The inner face: dlib boxes reach into hair and collar, whose edges the head mask may keep.
                    var r = face.Box.Scale(0.6f).Clip(before[i].Width, before[i].Height).ToRect();
                    var s0 = Sharpness(before[i], r);
                    var s1 = Sharpness(after[i], r);
                    Assert.True(s1 < 0.25 * s0, $"frame {i}: face sharpness {s1:F1} vs {s0:F1} before");
                }
                detBefore += detector.Detect(before[i]).Count;
                detAfter += detector.Detect(after[i]).Count;
            }
            Assert.True(detBefore >= before.Count * 0.8);
            Assert.True(detAfter <= detBefore / 10, $"dlib still finds {detAfter} faces after blurring ({detBefore} before)");
        }
        finally
        {
            foreach (var m in before.Concat(after)) m.Dispose();
        }
    }

    [Fact]
    public async Task FailClosed_FaceLeavingThePictureIsStillCovered()
    {
        using var tmp = new TempDir();
        var output = tmp.File("out.mp4");
        var report = await Anonymizer.RunAsync(clips.Leaving, output, Fast with { MaxMissingFrames = 5 }, ct: TestContext.Current.CancellationToken);
        Assert.Equal(Tool.CountFrames(clips.Leaving), report.Frames);
        // Once the detector loses the half-visible face, the track still covers it.
        Assert.True(report.Tracked + report.FallbackBlurred > 0, "the face leaving the frame should be tracked or fallback-blurred");
        var after = ReadAll(output);
        var before = ReadAll(clips.Leaving);
        try
        {
            using var detector = new DlibFaceDetector(upsample: 1);
            var records = report.FrameRecords.ToList();
            for (var i = 0; i < after.Count; i++)
            {
                var inBefore = detector.Detect(before[i]);
                if (inBefore.Count == 0) continue;
                Assert.NotEmpty(records[i].Faces);
                foreach (var box in inBefore)
                {
                    var r = box.Clip(before[i].Width, before[i].Height).ToRect();
                    if (r.Width < 8 || r.Height < 8) continue;
                    Assert.True(Sharpness(after[i], r) < 0.35 * Sharpness(before[i], r), $"frame {i}: a visible face was left sharp");
                }
            }
        }
        finally
        {
            foreach (var m in before.Concat(after)) m.Dispose();
        }
    }

    [Fact]
    public async Task TwoFacesSideBySide_GetTwoStableTrackIds()
    {
        using var tmp = new TempDir();
        var output = tmp.File("out.mp4");
        var report = await Anonymizer.RunAsync(clips.Two, output, Fast, ct: TestContext.Current.CancellationToken);
        Assert.Equal(2, report.Tracks);
        int? leftId = null;
        foreach (var frame in report.FrameRecords)
        {
            Assert.Equal(2, frame.Faces.Count);
            var left = frame.Faces.MinBy(f => f.Box.CenterX)!;
            leftId ??= left.TrackId;
            Assert.Equal(leftId, left.TrackId);
            Assert.True(left.Box.CenterX < 410);
            Assert.True(frame.Faces.MaxBy(f => f.Box.CenterX)!.Box.CenterX > 410);
        }
    }

    [Fact]
    public async Task FacelessVideo_PassesThroughFrameExactWithAWarning()
    {
        using var tmp = new TempDir();
        var output = tmp.File("out.mp4");
        var report = await Anonymizer.RunAsync(clips.Faceless, output, Fast, ct: TestContext.Current.CancellationToken);
        Assert.Equal(0, report.Faces);
        Assert.Contains(report.Warnings, w => w.Contains("no faces", StringComparison.OrdinalIgnoreCase));
        Assert.Equal(Tool.CountFrames(clips.Faceless), Tool.CountFrames(output));
        Assert.Equal(Tool.FrameTimes(clips.Faceless), Tool.FrameTimes(output));
        var before = ReadAll(clips.Faceless);
        var after = ReadAll(output);
        try
        {
            for (var i = 0; i < before.Count; i++)
            {
                using var diff = new Mat();
                Cv2.Absdiff(before[i], after[i], diff);
                Assert.True(Cv2.Mean(diff).Val0 < 3, $"frame {i} changed");
            }
        }
        finally
        {
            foreach (var m in before.Concat(after)) m.Dispose();
        }
    }

    private sealed class SyncProgress(Action<PipelineProgress> a) : IProgress<PipelineProgress>
    {
        public void Report(PipelineProgress value) => a(value);
    }

    [Fact]
    public async Task Cancellation_StopsAndLeavesNoOutput()
    {
        using var tmp = new TempDir();
        var output = tmp.File("out.mp4");
        using var cts = new CancellationTokenSource();
        var progress = new SyncProgress(p => { if (p.FramesDone >= 3) cts.Cancel(); });
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => Anonymizer.RunAsync(clips.Face, output, Fast, progress, cts.Token));
        Assert.False(File.Exists(output));
        Assert.False(File.Exists(OutputPaths.TempPathFor(output)));
        Assert.Empty(Directory.GetFileSystemEntries(tmp.Path));
    }

    private sealed class RecordingStage(int batch) : IFaceStage
    {
        public List<int> Batches { get; } = [];
        public List<(long Frame, int Track)> Seen { get; } = [];
        public bool Disposed { get; private set; }
        public string Name => "recording";
        public int BatchSize => batch;
        public IReadOnlyList<Mat> Process(IReadOnlyList<FaceCrop> crops, CancellationToken ct)
        {
            Batches.Add(crops.Count);
            Seen.AddRange(crops.Select(c => (c.FrameIndex, c.TrackId)));
            Assert.All(crops, c => Assert.Equal(new Size(128, 128), c.Crop.Size()));
            // A fresh Mat (not the input) exercises the pipeline's disposal of stage outputs.
            return crops.Select(c => c.Crop.Clone()).ToArray();
        }
        public void Dispose() => Disposed = true;
    }

    [Fact]
    public async Task Batcher_FlushesAtBatchSizeAndAtTheEnd_AndReportJsonHasEveryFrame()
    {
        using var tmp = new TempDir();
        var stage = new RecordingStage(4);
        var report = await Anonymizer.RunAsync(clips.Face, tmp.File("out.mp4"), Fast with { CropSize = 128 },
            ct: TestContext.Current.CancellationToken, stage: stage);
        Assert.False(stage.Disposed); // the caller's stage stays the caller's
        Assert.NotEmpty(stage.Batches);
        Assert.All(stage.Batches.Take(stage.Batches.Count - 1), b => Assert.Equal(4, b));
        Assert.InRange(stage.Batches[^1], 1, 4);
        Assert.Equal(report.Replaced + report.Tracked, stage.Seen.Count);
        Assert.Equal(stage.Seen.OrderBy(s => s.Frame), stage.Seen);

        var json = tmp.File("r.json");
        report.WriteJson(json);
        using var doc = JsonDocument.Parse(File.ReadAllText(json));
        var root = doc.RootElement;
        Assert.Equal(report.Frames, root.GetProperty("totals").GetProperty("frames").GetInt64());
        Assert.Equal(report.Faces, root.GetProperty("totals").GetProperty("faces").GetInt64());
        Assert.Equal(1, root.GetProperty("totals").GetProperty("tracks").GetInt32());
        Assert.True(root.GetProperty("totals").GetProperty("fps").GetDouble() > 0);
        var frames = root.GetProperty("frames").EnumerateArray().ToList();
        Assert.Equal(report.Frames, frames.Count);
        for (var i = 0; i < frames.Count; i++)
        {
            Assert.Equal(i, frames[i].GetProperty("index").GetInt64());
            foreach (var face in frames[i].GetProperty("faces").EnumerateArray())
            {
                Assert.Contains(face.GetProperty("handling").GetString(), new[] { "replaced", "tracked", "fallback-blurred" });
                Assert.Equal(4, face.GetProperty("box").GetArrayLength());
                Assert.Equal(1, face.GetProperty("trackId").GetInt32());
            }
        }
        Assert.Single(Directory.GetFiles(tmp.Path, "*.json"));
    }

    private sealed class BrokenStage : IFaceStage
    {
        public string Name => "broken";
        public int BatchSize => 3;
        public IReadOnlyList<Mat> Process(IReadOnlyList<FaceCrop> batch, CancellationToken ct) => throw new InvalidOperationException("model exploded");
        public void Dispose() { }
    }

    [Fact]
    public async Task FailingFaceStage_FallsBackToBlurringEveryFace()
    {
        using var tmp = new TempDir();
        var output = tmp.File("out.mp4");
        using var broken = new BrokenStage();
        var report = await Anonymizer.RunAsync(clips.Face, output, Fast, ct: TestContext.Current.CancellationToken, stage: broken);
        Assert.True(report.Faces > 0);
        Assert.Equal(report.Faces, report.FallbackBlurred);
        Assert.Contains(report.Warnings, w => w.Contains("model exploded", StringComparison.Ordinal));
        var before = ReadAll(clips.Face);
        var after = ReadAll(output);
        try
        {
            Assert.Equal(before.Count, after.Count);
            var records = report.FrameRecords.ToList();
            for (var i = 0; i < before.Count; i++)
                foreach (var face in records[i].Faces)
                {
                    var r = face.Box.Scale(0.6f).Clip(before[i].Width, before[i].Height).ToRect();
                    Assert.True(Sharpness(after[i], r) < 0.25 * Sharpness(before[i], r), $"frame {i}: face left sharp");
                }
        }
        finally
        {
            foreach (var m in before.Concat(after)) m.Dispose();
        }
    }

    [Fact]
    public async Task BadOptionsAndInputsFailBeforeAnyOutput()
    {
        using var tmp = new TempDir();
        var output = tmp.File("out.mp4");
        await Assert.ThrowsAsync<PipelineException>(() => Anonymizer.RunAsync(clips.Face, output, Fast with { Workers = 0 }));
        await Assert.ThrowsAsync<PipelineException>(() => Anonymizer.RunAsync(clips.Face, output, Fast with { Device = "tpu" }));
        await Assert.ThrowsAsync<MediaException>(() => Anonymizer.RunAsync(tmp.File("missing.mp4"), output, Fast));
        await Assert.ThrowsAnyAsync<Exception>(() => Anonymizer.RunAsync(clips.Face, clips.Face, Fast));
        Assert.Empty(Directory.GetFileSystemEntries(tmp.Path));
    }
}
