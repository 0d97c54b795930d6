using Deid.TestSupport;

[assembly: AssemblyFixture(typeof(Deid.Pipeline.Tests.Clips))]

namespace Deid.Pipeline.Tests;

/// <summary>Short clips cut once per test run from ../shared media, so the suite stays quick on 2 cores.</summary>
public sealed class Clips : IDisposable
{
    private readonly TempDir _dir = new();
    private readonly Dictionary<string, Lazy<string>> _clips;

    public Clips()
    {
        _clips = new()
        {
            // 410x412, 25 fps, one face, with audio: 1.2 s = 30 frames.
            ["face"] = Make("face.mp4", () => Tool.Ffmpeg("-i", TestPaths.Video("talk_small.mp4"), "-t", "1.2", "-c:v", "libx264", "-crf", "18", "-preset", "veryfast", "-c:a", "aac", _dir.File("face.mp4"))),
            // 512x512, 30 fps, audio: for the round trip.
            ["audio"] = Make("audio.mp4", () => Tool.Ffmpeg("-i", TestPaths.Video("talk_d3.mp4"), "-t", "1.0", "-c:v", "libx264", "-crf", "18", "-preset", "veryfast", "-c:a", "aac", _dir.File("audio.mp4"))),
            // The face slides out to the left and is fully gone after ~1.2 s.
            ["leaving"] = Make("leaving.mp4", () => Tool.Ffmpeg("-i", TestPaths.Video("talk_small.mp4"), "-filter_complex",
                "color=c=black:s=410x412:r=25:d=1.8[bg];[bg][0:v]overlay=x='-t*380':y=0:shortest=1,format=yuv420p[v]",
                "-map", "[v]", "-t", "1.8", "-c:v", "libx264", "-crf", "18", "-preset", "veryfast", _dir.File("leaving.mp4"))),
            // Two people side by side.
            ["two"] = Make("two.mp4", () => Tool.Ffmpeg("-i", TestPaths.Video("talk_small.mp4"), "-i", TestPaths.Video("talk_d3.mp4"), "-filter_complex",
                "[0:v]fps=25,setsar=1[a];[1:v]scale=412:412,fps=25,setsar=1[b];[a][b]hstack=inputs=2,format=yuv420p[v]",
                "-map", "[v]", "-t", "1.0", "-c:v", "libx264", "-crf", "18", "-preset", "veryfast", _dir.File("two.mp4"))),
            ["faceless"] = Make("faceless.mp4", () => Tool.Ffmpeg("-f", "lavfi", "-i", "testsrc=size=320x240:rate=10:duration=1.5",
                "-pix_fmt", "yuv420p", "-c:v", "libx264", "-crf", "18", "-preset", "veryfast", _dir.File("faceless.mp4"))),
        };
    }

    private Lazy<string> Make(string name, Action make) => new(() => { make(); return _dir.File(name); }, LazyThreadSafetyMode.ExecutionAndPublication);

    public string Face => _clips["face"].Value;
    public string WithAudio => _clips["audio"].Value;
    public string Leaving => _clips["leaving"].Value;
    public string Two => _clips["two"].Value;
    public string Faceless => _clips["faceless"].Value;

    public void Dispose() => _dir.Dispose();
}
