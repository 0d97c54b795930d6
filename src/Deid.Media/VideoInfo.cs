namespace Deid.Media;

public sealed record AudioStreamInfo(int Index, string Codec, int Channels, int SampleRate);

/// <summary>A subtitle or attachment stream of the source (index in the source file, ffprobe codec name, filename tag of an attachment).</summary>
public sealed record SideStreamInfo(int Index, string Codec, string? Language = null, string? FileName = null);

/// <param name="Width">Displayed (upright) width, i.e. after the rotation is applied.</param>
/// <param name="Height">Displayed (upright) height.</param>
/// <param name="Rotation">Clockwise rotation (0, 90, 180, 270) a player applies to the stored frames, from the display matrix.</param>
/// <param name="FrameRate">ffprobe's r_frame_rate (the base rate of the timestamps).</param>
/// <param name="TimeBase">Time base of the video stream; <see cref="VideoFrame.Pts"/> is in these units.</param>
/// <param name="FrameCount">Frame count from the container header, when it states one.</param>
/// <param name="IsVariableFrameRate">r_frame_rate and avg_frame_rate disagree, so frame durations vary.</param>
public sealed record VideoInfo(string Path, int Width, int Height, int Rotation,
    Rational FrameRate, Rational AverageFrameRate, Rational TimeBase, TimeSpan Duration, long? FrameCount,
    bool IsVariableFrameRate, string VideoCodec, IReadOnlyList<AudioStreamInfo> AudioStreams)
{
    public bool HasAudio => AudioStreams.Count > 0;

    /// <summary>Stored (coded) size before rotation.</summary>
    public int CodedWidth => Rotation is 90 or 270 ? Height : Width;
    public int CodedHeight => Rotation is 90 or 270 ? Width : Height;

    /// <summary>Index of the video stream in the source file (the one that is decoded).</summary>
    public int VideoStreamIndex { get; init; }

    /// <summary>ffprobe's format_name, e.g. "mov,mp4,m4a,3gp,3g2,mj2".</summary>
    public string FormatName { get; init; } = "";

    /// <summary>ffprobe's pix_fmt of the video stream (e.g. "yuv420p", "yuv444p10le"); empty when unknown.</summary>
    public string PixelFormat { get; init; } = "";

    /// <summary>Subtitle streams of the source, in file order.</summary>
    public IReadOnlyList<SideStreamInfo> SubtitleStreams { get; init; } = [];

    /// <summary>Attachment streams (Matroska fonts, cover files) of the source, in file order.</summary>
    public IReadOnlyList<SideStreamInfo> AttachmentStreams { get; init; } = [];
}
