using Deid.Media;
using Deid.TestSupport;

namespace Deid.Media.Tests;

public class ProbeTests
{
    [Theory]
    [InlineData("talk_d3.mp4", 512, 512, 30, 1, true)]
    [InlineData("talk_d0_noaudio.mp4", 512, 512, 25, 1, false)]
    [InlineData("talk_d13_portrait_noaudio.mp4", 720, 1280, 30, 1, false)]
    [InlineData("wide_s13.mp4", 720, 1080, 25, 1, true)]
    [InlineData("talk_1080p.mp4", 1920, 1080, 30000, 1001, true)]
    [InlineData("talk_small.mp4", 410, 412, 25, 1, true)]
    public void ProbesSharedClips(string name, int width, int height, long rateNum, long rateDen, bool audio)
    {
        var path = Clips.Shared(name);
        var info = MediaProbe.Probe(path);
        Assert.Equal(width, info.Width);
        Assert.Equal(height, info.Height);
        Assert.Equal(new Rational(rateNum, rateDen), info.FrameRate);
        Assert.Equal(audio, info.HasAudio);
        Assert.Equal(0, info.Rotation);
        Assert.False(info.IsVariableFrameRate);
        Assert.Equal("h264", info.VideoCodec);
        // packets (no decoding needed) = frames for these clips
        var packets = Tool.Run("ffprobe", "-v", "error", "-select_streams", "v:0", "-count_packets", "-show_entries", "stream=nb_read_packets", "-of", "csv=p=0", path);
        Assert.Equal(long.Parse(packets.StdOut.Trim().Trim(','), System.Globalization.CultureInfo.InvariantCulture), info.FrameCount);
        var expected = double.Parse(Clips.VideoStream(path).GetProperty("duration").GetString()!, System.Globalization.CultureInfo.InvariantCulture);
        Assert.Equal(expected, info.Duration.TotalSeconds, 3);
        if (audio) Assert.Equal("aac", info.AudioStreams[0].Codec);
    }

    [Fact]
    public void ProbeFindsVideoStreamAfterAudio()
    {
        // talk_small.mp4 stores its audio first
        var info = MediaProbe.Probe(Clips.Shared("talk_small.mp4"));
        Assert.Equal(1, info.VideoStreamIndex);
        Assert.Equal(0, info.AudioStreams[0].Index);
        Assert.Equal(2, info.AudioStreams[0].Channels);
        Assert.Equal(44100, info.AudioStreams[0].SampleRate);
    }

    [Fact]
    public void ProbeSeesRotationAndReportsUprightSize()
    {
        using var dir = new TempDir();
        var clip = Clips.Trimmed(dir, "talk_d13_portrait_noaudio.mp4", 0.3, scale: "180:320");
        var rotated = dir.File("rot.mp4");
        Tool.Ffmpeg("-i", clip, "-c", "copy", "-metadata:s:v:0", "rotate=90", rotated);
        var info = MediaProbe.Probe(rotated);
        Assert.Equal(90, Math.Abs(Clips.Rotation(rotated)));
        Assert.Contains(info.Rotation, new[] { 90, 270 });
        Assert.Equal(320, info.Width);
        Assert.Equal(180, info.Height);
        Assert.Equal(180, info.CodedWidth);
    }

    [Theory]
    [InlineData("30/1", 30, 1)]
    [InlineData("30000/1001", 30000, 1001)]
    [InlineData("25", 25, 1)]
    [InlineData("29.97", 2997, 100)]
    public void RationalParses(string text, long num, long den)
    {
        var r = Rational.Parse(text);
        Assert.Equal(new Rational(num, den), r);
        Assert.Equal($"{num}/{den}", r.ToString());
        Assert.Equal((double)num / den, r.Value, 9);
    }

    [Fact]
    public void RationalRescalesExactly()
    {
        Assert.Equal(1001, Rational.Rescale(1, new Rational(1001, 30000), new Rational(1, 30000)));
        Assert.Equal(614, Rational.Rescale(40, new Rational(1, 1000), new Rational(1, 15360)));   // 614.4
        Assert.Equal(1229, Rational.Rescale(80, new Rational(1, 1000), new Rational(1, 15360)));  // 1228.8
        Assert.Equal(-1229, Rational.Rescale(-80, new Rational(1, 1000), new Rational(1, 15360)));
        Assert.Equal(33_366_667, Rational.Rescale(1, new Rational(1001, 30000), new Rational(1, 1_000_000_000)));
        Assert.Throws<FormatException>(() => Rational.Parse("abc"));
    }
}
