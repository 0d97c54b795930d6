using Deid.Media;
using Deid.Models;
using Deid.TestSupport;
using OpenCvSharp;

namespace Deid.Pipeline.Tests;

/// <summary>
/// One engine (small random networks: G still 256 px) and short driving clips cut from ../shared at test time, shared
/// by the reenactment tests; runs are cached so a test that needs a run another test made does not redo it.
/// </summary>
public sealed class ReenactFixture : IDisposable
{
    public TempDir Dir { get; } = new();
    public DeidEngine Engine { get; } = new("cpu", TestPaths.Models);
    public string Still { get; }
    private readonly Dictionary<string, Lazy<string>> _clips;
    private readonly Dictionary<string, (string Output, ReenactReport Report)> _runs = [];
    private readonly SemaphoreSlim _lock = new(1, 1);

    public static readonly ReenactOptions Options = new()
    {
        Workers = 2,
        BatchSize = 4,
        Latent = new LatentOptions { Weights = new LatentWeightsSpec { RandomWeights = true, RandomSize = RandomWeightsSize.Small } },
    };

    public ReenactFixture()
    {
        // 320x320: the identity photo, small enough to encode quickly.
        Still = Dir.File("still.png");
        Tool.Ffmpeg("-i", TestPaths.Identity("photo_s1.jpg"), "-vf", "scale=320:320", Still);
        var small = TestPaths.Video("talk_small.mp4");
        string[] enc = ["-c:v", "libx264", "-crf", "18", "-preset", "veryfast"];
        _clips = new()
        {
            // 10 frames at 25 fps with audio.
            ["plain"] = Make("plain.mp4", p => Tool.Ffmpeg(["-i", small, "-t", "0.4", .. enc, "-c:a", "aac", p])),
            // The same frames panned: the picture moves right by 200 px/s (the face with it).
            ["pan"] = Make("pan.mp4", p => Tool.Ffmpeg(["-i", small, "-t", "0.4", "-vf", "pad=iw+160:ih:80:0,crop=410:412:'80-200*t':0", .. enc, "-an", p])),
            // Irregular timestamps (every fourth frame dropped: steps of 40 and 80 ms), with audio.
            ["vfr"] = Make("vfr.mp4", p => Tool.Ffmpeg(["-i", small, "-t", "0.5", "-vf", "select='not(eq(mod(n\\,4)\\,1))'", "-fps_mode", "vfr", .. enc, "-c:a", "aac", p])),
            // The face for 0.2 s, then black for 0.4 s: the driving face is lost.
            ["lost"] = Make("lost.mp4", p => Tool.Ffmpeg(["-i", small, "-t", "0.6", "-vf", "drawbox=x=0:y=0:w=iw:h=ih:color=black:t=fill:enable='gte(t,0.2)'", .. enc, "-an", p])),
            ["faceless"] = Make("faceless.mp4", p => Tool.Ffmpeg(["-f", "lavfi", "-i", "testsrc=size=320x240:rate=10:duration=0.5", "-pix_fmt", "yuv420p", .. enc, p])),
        };
    }

    private Lazy<string> Make(string name, Action<string> make) =>
        new(() => { make(Dir.File(name)); return Dir.File(name); }, LazyThreadSafetyMode.ExecutionAndPublication);

    public string Clip(string name) => _clips[name].Value;

    /// <summary>Reenacts <paramref name="clip"/> once per (key); later calls get the same output and report.</summary>
    public async Task<(string Output, ReenactReport Report)> Run(string key, string clip, ReenactOptions? options = null)
    {
        await _lock.WaitAsync();
        try
        {
            if (_runs.TryGetValue(key, out var done)) return done;
            var output = Dir.File("out-" + key + ".mp4");
            var report = await Reenactor.ReenactAsync(Engine, Still, Clip(clip), output, options ?? Options, ct: TestContext.Current.CancellationToken);
            return _runs[key] = (output, report);
        }
        finally { _lock.Release(); }
    }

    public void Dispose()
    {
        foreach (var (_, report) in _runs.Values) report.Dispose();
        Engine.Dispose();
        Dir.Dispose();
    }
}

public class ReenactTests(ReenactFixture f) : IClassFixture<ReenactFixture>
{
    private static (int Width, int Height) Size(string path)
    {
        var v = Tool.Probe(path).RootElement.GetProperty("streams").EnumerateArray().First(s => s.GetProperty("codec_type").GetString() == "video");
        return (v.GetProperty("width").GetInt32(), v.GetProperty("height").GetInt32());
    }

    /// <summary>Size and md5 of every audio packet, as ffmpeg copies them.</summary>
    private static string[] AudioPackets(string path)
    {
        var r = Tool.Run("ffmpeg", "-v", "error", "-i", path, "-map", "0:a", "-c", "copy", "-f", "framemd5", "-");
        return r.StdOut.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => !l.StartsWith('#'))
            .Select(l => string.Join(",", l.Split(',').TakeLast(2).Select(x => x.Trim()))).ToArray();
    }

    private static string[] VideoMd5(string path)
    {
        var r = Tool.Run("ffmpeg", "-v", "error", "-i", path, "-map", "0:v", "-f", "framemd5", "-");
        return r.StdOut.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => !l.StartsWith('#')).ToArray();
    }

    [Fact]
    public async Task Vfr_FrameCountTimestampsAndAudioAreTheDrivingClips_SizeIsTheStills()
    {
        var driving = f.Clip("vfr");
        var (output, report) = await f.Run("vfr", "vfr");
        var times = Tool.FrameTimes(driving);
        Assert.True(times.Zip(times.Skip(1), (a, b) => Math.Round(b - a, 3)).Distinct().Count() > 1, "the driving clip should be VFR");
        Assert.Equal(Tool.CountFrames(driving), Tool.CountFrames(output));
        Assert.Equal(times, Tool.FrameTimes(output));
        var audio = AudioPackets(driving);
        Assert.NotEmpty(audio);
        Assert.Equal(audio, AudioPackets(output));
        Assert.Equal((320, 320), Size(output));
        Assert.Equal(times.Length, report.Frames);
        Assert.Equal(report.Frames, report.Generated + report.Held + report.NoHead);
        Assert.True(report.Generated >= report.Frames - 2, $"the driving face should drive nearly every frame ({report.Generated}/{report.Frames})");
        Assert.All(report.FrameRecords.Where(r => r.Head == ReenactHead.Generated), r => Assert.NotNull(r.IdentitySimilarity));
        Assert.Contains(report.FrameRecords.Skip(1), r => r.WChange != null);
        Assert.Contains(report.Warnings, w => w.Contains("RANDOM WEIGHTS"));
    }

    [Fact]
    public async Task SameInputs_IdenticalOutput()
    {
        var (a, _) = await f.Run("plain", "plain");
        var (b, _) = await f.Run("plain-again", "plain");
        Assert.Equal(VideoMd5(a), VideoMd5(b));
    }

    [Fact]
    public async Task Crop_WritesGeneratorSizedHeads()
    {
        var (output, report) = await f.Run("crop", "plain", ReenactFixture.Options with { Crop = true });
        Assert.Equal((256, 256), Size(output));
        Assert.Equal(256, report.CropSize);
        Assert.Equal(Tool.CountFrames(f.Clip("plain")), Tool.CountFrames(output));
        Assert.All(report.FrameRecords, r => Assert.Null(r.Paste));
    }

    [Fact]
    public async Task Size_ResizesTheStill()
    {
        var (output, report) = await f.Run("size", "plain", ReenactFixture.Options with { Width = 240, Height = 160 });
        Assert.Equal((240, 160), Size(output));
        Assert.Equal((240, 160), (report.Width, report.Height));
    }

    /// <summary>Centroid x of the pixels where a frame differs from the still: where the pasted head is.</summary>
    private static double DiffCentroidX(Mat frame, Mat still)
    {
        using var diff = new Mat();
        Cv2.Absdiff(frame, still, diff);
        using var gray = new Mat();
        Cv2.CvtColor(diff, gray, ColorConversionCodes.BGR2GRAY);
        using var mask = new Mat();
        Cv2.Threshold(gray, mask, 30, 255, ThresholdTypes.Binary);
        var m = Cv2.Moments(mask, true);
        Assert.True(m.M00 > 100, "the head should change the still");
        return m.M10 / m.M00;
    }

    [Fact]
    public async Task HeadFollowsADrivingTranslation()
    {
        var (plainOut, plain) = await f.Run("plain", "plain");
        var (panOut, pan) = await f.Run("pan", "pan");
        Assert.Equal(plain.Frames, pan.Frames);
        var first = pan.FrameRecords.First();
        var last = pan.FrameRecords.Last();
        Assert.Equal(ReenactHead.Generated, first.Head);
        Assert.Equal(ReenactHead.Generated, last.Head);
        // The pan moves the driving face 200 px/s to the right on top of the speaker's own motion (seen in the plain clip).
        var (plainFirst, plainLast) = (plain.FrameRecords.First(), plain.FrameRecords.Last());
        var drivingShift = (last.Driving!.X - first.Driving!.X) - (plainLast.Driving!.X - plainFirst.Driving!.X);
        Assert.InRange(drivingShift, 0.5 * 200 * last.Time, 1.2 * 200 * last.Time);
        // In the still, by the still's face size over the driving face's.
        var expected = drivingShift * first.Paste!.Side / first.Driving.Side;
        var pasteShift = (last.Paste!.X - first.Paste.X) - (plainLast.Paste!.X - plainFirst.Paste!.X);
        Assert.InRange(pasteShift, 0.8 * expected, 1.2 * expected);
        Assert.InRange(Math.Abs(last.Paste.Y - first.Paste.Y - (plainLast.Paste!.Y - plainFirst.Paste!.Y)), 0, 0.25 * expected);

        // And in the pixels: where the output differs from the still moves right by about as much.
        using var still = Cv2.ImRead(f.Still);
        double Shift(string video)
        {
            using var reader = new VideoReader(video);
            var frames = reader.ReadFrames().ToList();
            try { return DiffCentroidX(frames[^1].Image, still) - DiffCentroidX(frames[0].Image, still); }
            finally { foreach (var fr in frames) fr.Dispose(); }
        }
        var pixelShift = Shift(panOut) - Shift(plainOut);
        Assert.InRange(pixelShift, 0.5 * expected, 1.5 * expected);
    }

    [Fact]
    public async Task LostDrivingFace_HoldsTheLastHead()
    {
        var (output, report) = await f.Run("lost", "lost");
        Assert.Equal(Tool.CountFrames(f.Clip("lost")), Tool.CountFrames(output));
        Assert.True(report.Held >= 5, $"frames without the driving face should be held ({report.Held} of {report.Frames})");
        var firstHeld = report.FrameRecords.First(r => r.Head == ReenactHead.Held);
        Assert.All(report.FrameRecords.Where(r => r.Index > firstHeld.Index), r => Assert.Equal(ReenactHead.Held, r.Head));
        Assert.True(firstHeld.Time >= 0.2 - 1e-6, "the face is there until 0.2 s");
        var lastGenerated = report.FrameRecords.Last(r => r.Head == ReenactHead.Generated);
        Assert.All(report.FrameRecords.Where(r => r.Head == ReenactHead.Held), r => Assert.Equal(lastGenerated.Paste, r.Paste));
        Assert.Contains(report.Warnings, w => w.Contains("held"));
        var json = System.Text.Json.JsonDocument.Parse(report.ToJson()).RootElement;
        Assert.Equal(report.Held, json.GetProperty("totals").GetProperty("held").GetInt64());
        Assert.Equal(report.Frames, json.GetProperty("frames").GetArrayLength());
    }

    [Fact]
    public async Task FacelessDrivingClip_FailsAndLeavesNothing()
    {
        var output = f.Dir.File("faceless-out.mp4");
        var e = await Assert.ThrowsAsync<PipelineException>(() =>
            Reenactor.ReenactAsync(f.Engine, f.Still, f.Clip("faceless"), output, ReenactFixture.Options, ct: TestContext.Current.CancellationToken));
        Assert.Contains("no face", e.Message);
        Assert.False(File.Exists(output));
        Assert.DoesNotContain(Directory.GetFiles(f.Dir.Path), p => Path.GetFileName(p).Contains("faceless-out"));
    }

    [Theory]
    [InlineData("640x480", 640, 480)]
    [InlineData(" 320X240 ", 320, 240)]
    public void ParseSize_Accepts(string s, int w, int h) => Assert.Equal((w, h), Reenactor.ParseSize(s));

    [Theory]
    [InlineData("641x480")]
    [InlineData("640x")]
    [InlineData("abc")]
    [InlineData("-640x480")]
    [InlineData("8x8")]
    public void ParseSize_Rejects(string s) => Assert.Throws<PipelineException>(() => Reenactor.ParseSize(s));

    [Fact]
    public void Clamp_KeepsTheHeadInsideThePicture()
    {
        // A 256 crop mapped 1:1 with its centre at the picture's left edge: shifted right by half the head's width.
        var (place, clamped) = HeadPlacement.Clamp(Affine.Translation(-128, 100), 256, 400, 400);
        Assert.True(clamped);
        var c = place.Apply(128, 128);
        Assert.Equal(0.38 * 256, c.X, 3);
        // Larger than the picture: shrunk to fit.
        var (big, _) = HeadPlacement.Clamp(new Affine(4, 0, 0, 0, 4, 0), 256, 400, 400);
        Assert.True(big.Scale * 256 * 0.9 <= 400 + 1e-6);
        var (fine, none) = HeadPlacement.Clamp(Affine.Translation(50, 50), 256, 400, 400);
        Assert.False(none);
        Assert.Equal(Affine.Translation(50, 50), fine);
    }
}
