namespace Deid.Media;

/// <summary>
/// What a <see cref="VideoWriter"/> produces: the upright frame size, the time base the frames' timestamps are in,
/// the nominal frame rate, the stored orientation, and the file whose audio streams are copied. A transcode takes
/// it from its source (<see cref="From"/>); a reenactment writes frames of the still's size on the driving clip's
/// timing and audio (<c>From(driving) with { Width = …, Height = …, Rotation = 0 }</c>).
/// </summary>
/// <param name="Width">Upright width of the frames written.</param>
/// <param name="Height">Upright height.</param>
/// <param name="Rotation">Clockwise rotation a player applies (mp4/mov store the frames turned back, with the tag).</param>
/// <param name="AudioSource">The file the audio streams are copied from (null: no audio). Also the path the output must not be.</param>
public sealed record VideoWriterSpec(int Width, int Height, Rational TimeBase, Rational FrameRate, int Rotation,
    string? AudioSource, IReadOnlyList<AudioStreamInfo> AudioStreams)
{
    public bool HasAudio => AudioSource != null && AudioStreams.Count > 0;

    /// <summary>The probed file the timing, audio, subtitle and attachment streams come from.</summary>
    public required VideoInfo Source { get; init; }

    /// <summary>Like the source: same size, orientation, timing, and its audio (and subtitles, attachments).</summary>
    public static VideoWriterSpec From(VideoInfo source)
    {
        ArgumentNullException.ThrowIfNull(source);
        return new(source.Width, source.Height, source.TimeBase, source.FrameRate, source.Rotation, source.Path, source.AudioStreams) { Source = source };
    }

    /// <summary>The source as the writer sees it: this spec's size, orientation and timing; no audio when <see cref="AudioSource"/> is null.</summary>
    internal VideoInfo ToWriterInfo() => Source with
    {
        Width = Width, Height = Height, Rotation = Rotation, TimeBase = TimeBase, FrameRate = FrameRate,
        AudioStreams = AudioSource == null ? [] : AudioStreams,
    };
}
