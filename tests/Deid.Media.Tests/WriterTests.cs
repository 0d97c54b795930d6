using System.Globalization;
using Deid.Media;
using Deid.TestSupport;
using OpenCvSharp;

namespace Deid.Media.Tests;

public class WriterTests
{
    [Fact]
    public void RoundTripKeepsFramesRateDurationAndAudioPackets()
    {
        var input = Clips.Shared("talk_d3.mp4");
        using var dir = new TempDir();
        var output = dir.File("out.mp4");
        var info = Clips.RoundTrip(input, output);

        Assert.Equal(Tool.CountFrames(input), Tool.CountFrames(output));
        var inTimes = Tool.FrameTimes(input);
        var outTimes = Tool.FrameTimes(output);
        Assert.Equal(inTimes.Length, outTimes.Length);
        for (var i = 0; i < inTimes.Length; i++) Assert.Equal(inTimes[i], outTimes[i], 4);

        var outInfo = MediaProbe.Probe(output);
        Assert.Equal(info.Width, outInfo.Width);
        Assert.Equal(info.Height, outInfo.Height);
        Assert.Equal(info.FrameRate, outInfo.FrameRate);
        Assert.Equal(info.AverageFrameRate, outInfo.AverageFrameRate);
        Assert.InRange(Math.Abs((outInfo.Duration - info.Duration).TotalSeconds), 0, 1.0 / info.FrameRate.Value + 1e-6);
        Assert.Equal("h264", outInfo.VideoCodec);
        Assert.Equal("yuv420p", Clips.VideoStream(output).GetProperty("pix_fmt").GetString());

        Assert.Single(outInfo.AudioStreams);
        var inPackets = Clips.AudioPackets(input);
        var outPackets = Clips.AudioPackets(output);
        Assert.Equal(inPackets.Count, outPackets.Count);
        Assert.Equal(inPackets.Select(p => p.Size), outPackets.Select(p => p.Size));
        Assert.Equal(inPackets.Select(p => p.Pts), outPackets.Select(p => p.Pts));
        Assert.Equal(["out.mp4"], Clips.Leftovers(dir.Path));
    }

    [Fact]
    public void NtscRateAndTimeBaseSurvive()
    {
        using var dir = new TempDir();
        var clip = Clips.Trimmed(dir, "talk_1080p.mp4", 1.0, scale: "320:180");
        var output = dir.File("out.mp4");
        var info = Clips.RoundTrip(clip, output);
        var outInfo = MediaProbe.Probe(output);
        Assert.Equal(new Rational(30000, 1001), outInfo.FrameRate);
        Assert.Equal(info.TimeBase, outInfo.TimeBase);
        Assert.Equal(Tool.FrameTimes(clip), Tool.FrameTimes(output));
        Assert.Equal(Clips.AudioPackets(clip).Select(p => p.Size), Clips.AudioPackets(output).Select(p => p.Size));
    }

    [Fact]
    public void VariableFrameRateTimestampsArePreserved()
    {
        using var dir = new TempDir();
        var vfr = Clips.Vfr(dir);
        var output = dir.File("out.mp4");
        Clips.RoundTrip(vfr, output);
        var expected = Tool.FrameTimes(vfr);
        var actual = Tool.FrameTimes(output);
        Assert.Equal(expected.Length, actual.Length);
        for (var i = 0; i < expected.Length; i++) Assert.Equal(expected[i], actual[i], 6);
    }

    [Theory]
    [InlineData(90)]
    [InlineData(270)]
    [InlineData(180)]
    public void RotatedClipDisplaysTheSame(int rotateTag)
    {
        using var dir = new TempDir();
        var clip = Clips.Trimmed(dir, "talk_d13_portrait_noaudio.mp4", 0.3, scale: "180:320");
        var rotated = dir.File("rot.mp4");
        Tool.Ffmpeg("-i", clip, "-c", "copy", "-metadata:s:v:0", "rotate=" + rotateTag.ToString(CultureInfo.InvariantCulture), rotated);
        var output = dir.File("out.mp4");
        var info = Clips.RoundTrip(rotated, output);

        Assert.Equal(Clips.Rotation(rotated), Clips.Rotation(output));
        var outInfo = MediaProbe.Probe(output);
        Assert.Equal(info.Width, outInfo.Width);
        Assert.Equal(info.Height, outInfo.Height);
        Assert.Equal(info.Rotation, outInfo.Rotation);
        Assert.Equal(Tool.CountFrames(rotated), Tool.CountFrames(output));
        using var a = Clips.FirstFrameGray(rotated, info.Width, info.Height);
        using var b = Clips.FirstFrameGray(output, info.Width, info.Height);
        using var diff = new Mat();
        Cv2.Absdiff(a, b, diff);
        Assert.True(Cv2.Mean(diff).Val0 < 3.0, $"mean abs diff {Cv2.Mean(diff).Val0}");
    }

    [Fact]
    public void IdentifyingFileTagsAreDroppedAudioTagsKept()
    {
        using var dir = new TempDir();
        var clip = Clips.Trimmed(dir, "talk_small.mp4", 0.3, scale: "96:96");
        var tagged = dir.File("tagged.mp4");
        Tool.Ffmpeg("-i", clip, "-c", "copy", "-metadata", "location=+48.8566+002.3522/", "-metadata", "title=Jane Doe at home",
            "-metadata:s:a:0", "language=fra", tagged);
        var output = dir.File("out.mp4");
        Clips.RoundTrip(tagged, output);
        var probe = Tool.Probe(output).RootElement;
        var formatTags = probe.GetProperty("format").TryGetProperty("tags", out var t) ? t.ToString() : "";
        Assert.DoesNotContain("48.85", formatTags);
        Assert.DoesNotContain("Jane", formatTags);
        var audio = probe.GetProperty("streams").EnumerateArray().Single(s => s.GetProperty("codec_type").GetString() == "audio");
        Assert.Equal("fra", audio.GetProperty("tags").GetProperty("language").GetString());
    }

    [Fact]
    public void NoAudioClipStaysSilent()
    {
        using var dir = new TempDir();
        var clip = Clips.Trimmed(dir, "talk_d0_noaudio.mp4", 0.5, scale: "128:128");
        var output = dir.File("out.mp4");
        Clips.RoundTrip(clip, output);
        Assert.Equal(0, Clips.AudioStreamCount(output));
        Assert.Equal(Tool.CountFrames(clip), Tool.CountFrames(output));
    }

    [Fact]
    public void MatroskaOutputWorks()
    {
        using var dir = new TempDir();
        var clip = Clips.Trimmed(dir, "talk_small.mp4", 0.5);
        var output = dir.File("out.mkv");
        Clips.RoundTrip(clip, output);
        Assert.Equal(Tool.CountFrames(clip), Tool.CountFrames(output));
        Assert.Equal(1, Clips.AudioStreamCount(output));
        Assert.Equal(410, MediaProbe.Probe(output).Width);
    }

    [Fact]
    public void WrittenPixelsAreTheOnesGiven()
    {
        using var dir = new TempDir();
        var clip = Clips.Trimmed(dir, "talk_d0_noaudio.mp4", 0.2, scale: "128:128");
        var output = dir.File("out.mp4");
        using (var reader = new VideoReader(clip))
        using (var writer = new VideoWriter(output, reader.Info))
        {
            foreach (var frame in reader.ReadFrames(TestContext.Current.CancellationToken))
                using (frame)
                {
                    frame.Image.SetTo(new Scalar(0, 0, 0));
                    Cv2.Rectangle(frame.Image, new Rect(0, 0, 64, 128), new Scalar(255, 255, 255), -1);
                    writer.Write(frame);
                }
            writer.Complete();
        }
        using var gray = Clips.FirstFrameGray(output, 128, 128);
        Assert.True(Cv2.Mean(gray[new Rect(4, 4, 56, 120)]).Val0 > 240);
        Assert.True(Cv2.Mean(gray[new Rect(68, 4, 56, 120)]).Val0 < 15);
    }

    [Theory]
    [InlineData("medium", 3840, 2160, 10)]   // 4K: medium's 40 frames would cost x264 about 1 GB
    [InlineData("medium", 2560, 1440, 24)]
    [InlineData("medium", 1920, 1080, null)] // fits: the preset's own 40
    [InlineData("medium", 512, 512, null)]
    [InlineData("ultrafast", 3840, 2160, null)] // no lookahead to shrink
    [InlineData("veryfast", 7680, 4320, null)]  // 10 already, the floor
    public void EncoderLookahead_IsBoundedByFrameSize(string preset, int width, int height, int? expected) =>
        Assert.Equal(expected, VideoWriter.Lookahead(preset, width, height));

    [Fact]
    public void FourKOutput_AsksX264ForTheBoundedLookahead()
    {
        using var dir = new TempDir();
        var clip = dir.File("k4.mp4");
        Tool.Ffmpeg("-f", "lavfi", "-i", "testsrc2=s=3840x2160:r=25:d=0.12", "-c:v", "libx264", "-preset", "ultrafast", clip);
        var output = dir.File("out.mp4");
        using (var reader = new VideoReader(clip))
        using (var writer = new VideoWriter(output, reader.Info))
        {
            foreach (var frame in reader.ReadFrames(TestContext.Current.CancellationToken))
                using (frame) writer.Write(frame);
            writer.Complete();
        }
        // x264 records its settings in the stream (an SEI message).
        var sei = System.Text.Encoding.ASCII.GetString(File.ReadAllBytes(output));
        Assert.Contains(" rc_lookahead=10 ", sei);
        Assert.Equal(3, Tool.CountFrames(output));
    }

    [Fact]
    public void DisposeWithoutCompleteLeavesNothing()
    {
        using var dir = new TempDir();
        var clip = Clips.Trimmed(dir, "talk_d0_noaudio.mp4", 0.5, scale: "128:128");
        var outDir = Directory.CreateDirectory(dir.File("out")).FullName;
        var output = Path.Combine(outDir, "out.mp4");
        string writer0;
        List<int> ffmpeg;
        using (var reader = new VideoReader(clip))
        using (var writer = new VideoWriter(output, reader.Info))
        {
            writer0 = writer.TempPath;
            foreach (var frame in reader.ReadFrames(TestContext.Current.CancellationToken).Take(5))
                using (frame)
                    writer.Write(frame);
            ffmpeg = Clips.ChildProcessesUsing(writer0);
            Assert.StartsWith(".out.mp4.deid-tmp-", Path.GetFileName(writer.TempPath));
            Assert.EndsWith(".mp4", writer.TempPath);
        }
        Assert.Empty(Clips.Leftovers(outDir));
        Assert.NotEmpty(ffmpeg);
        Assert.Empty(Clips.StillPresent(ffmpeg));
    }

    [Fact]
    public void CompleteReplacesAnExistingOutputAtomically()
    {
        using var dir = new TempDir();
        var clip = Clips.Trimmed(dir, "talk_d0_noaudio.mp4", 0.2, scale: "64:64");
        var output = dir.File("out.mp4");
        File.WriteAllText(output, "old");
        Clips.RoundTrip(clip, output);
        Assert.Equal(Tool.CountFrames(clip), Tool.CountFrames(output));
        Assert.Equal(["clip.mp4", "out.mp4"], Clips.Leftovers(dir.Path).Order().ToArray());
        Assert.NotEqual("old", File.ReadAllText(output)[..3]);
    }

    [Fact]
    public void RejectsWrongFrameSizeAndOrder()
    {
        using var dir = new TempDir();
        var clip = Clips.Trimmed(dir, "talk_d0_noaudio.mp4", 0.2, scale: "64:64");
        var info = MediaProbe.Probe(clip);
        var outDir = Directory.CreateDirectory(dir.File("out")).FullName;
        using (var writer = new VideoWriter(Path.Combine(outDir, "o.mp4"), info))
        {
            using var wrong = new VideoFrame(0, 0, TimeSpan.Zero, new Mat(32, 32, MatType.CV_8UC3, Scalar.All(0)));
            Assert.Contains("expected 64x64", Assert.Throws<MediaException>(() => writer.Write(wrong)).Message);
            using var f1 = new VideoFrame(0, 512, TimeSpan.Zero, new Mat(64, 64, MatType.CV_8UC3, Scalar.All(0)));
            using var f0 = new VideoFrame(1, 0, TimeSpan.Zero, new Mat(64, 64, MatType.CV_8UC3, Scalar.All(0)));
            writer.Write(f1);
            Assert.Contains("presentation order", Assert.Throws<MediaException>(() => writer.Write(f0)).Message);
        }
        Assert.Empty(Clips.Leftovers(outDir));
        using (var empty = new VideoWriter(Path.Combine(outDir, "o.mp4"), info))
            Assert.Contains("no frames", Assert.Throws<MediaException>(() => empty.Complete()).Message);
        Assert.Empty(Clips.Leftovers(outDir));
    }
}
