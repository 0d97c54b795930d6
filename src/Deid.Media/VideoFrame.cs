using OpenCvSharp;

namespace Deid.Media;

/// <summary>
/// One decoded picture. Owns <see cref="Image"/>: dispose the frame when done (after that Image is null; a frame from
/// <see cref="VideoReader"/> hands its pixels back to the reader for a later frame, so nothing may keep a view of them).
/// </summary>
public sealed class VideoFrame : IDisposable
{
    public VideoFrame() { }

    public VideoFrame(long index, long pts, TimeSpan time, Mat image)
    {
        Index = index;
        Pts = pts;
        Time = time;
        Image = image;
    }

    /// <summary>0-based position in presentation order.</summary>
    public long Index { get; set; }

    /// <summary>Presentation timestamp in <see cref="VideoInfo.TimeBase"/> units.</summary>
    public long Pts { get; set; }

    public TimeSpan Time { get; set; }

    /// <summary>
    /// The decoder reported errors in this picture, or it was predicted from such a picture with no key frame since:
    /// its pixels are partly the decoder's guess (concealment), so a face in it may be visible yet unrecognisable to a
    /// detector.
    /// </summary>
    public bool Damaged { get; set; }

    /// <summary>CV_8UC3 BGR, upright, <see cref="VideoInfo.Width"/> x <see cref="VideoInfo.Height"/>.</summary>
    public Mat Image { get; set; } = null!;

    /// <summary>Where <see cref="Dispose"/> hands the image (the reader's pool); null: the image is disposed.</summary>
    internal Action<Mat>? Recycle { get; init; }

    public void Dispose()
    {
        var image = Image;
        Image = null!;
        if (image is null) return;
        if (Recycle is { } recycle) recycle(image);
        else image.Dispose();
    }
}
