using System.Globalization;
using System.Text.Json;

namespace Deid.Media;

/// <summary>Reads a video's stream layout with ffprobe (JSON) and rejects what cannot be processed.</summary>
public static class MediaProbe
{
    public static VideoInfo Probe(string path)
    {
        if (string.IsNullOrWhiteSpace(path)) throw new MediaException("input path is empty");
        var full = Path.GetFullPath(path);
        if (Directory.Exists(full)) throw new MediaException($"input is a directory, not a video file: {path}");
        if (!File.Exists(full)) throw new MediaException($"input file not found: {path}");
        long size;
        try { size = new FileInfo(full).Length; }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new MediaException($"cannot read input file {path}: {e.Message}", e);
        }
        if (size == 0) throw new MediaException($"input file is empty (0 bytes): {path}");
        try { using (File.OpenRead(full)) { } }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new MediaException($"cannot read input file {path}: {e.Message}", e);
        }

        var r = FfTools.Run(FfTools.Ffprobe, ["-v", "error", "-print_format", "json", "-show_streams", "-show_format", full]);
        if (r.Code != 0)
            throw new MediaException($"not a readable video (unknown format, truncated or corrupt): {path} ({FfTools.Summarize(r.StdErr)})");

        JsonElement root;
        try { root = JsonDocument.Parse(r.StdOut).RootElement; }
        catch (JsonException e) { throw new MediaException($"ffprobe returned unreadable output for {path}", e); }

        var format = root.TryGetProperty("format", out var f) ? f : default;
        var formatName = Str(format, "format_name") ?? "";
        var streams = root.TryGetProperty("streams", out var s) && s.ValueKind == JsonValueKind.Array
            ? s.EnumerateArray().ToList() : [];

        var audio = streams.Where(x => Str(x, "codec_type") == "audio")
            .Select(x => new AudioStreamInfo(Int(x, "index") ?? 0, Str(x, "codec_name") ?? "unknown", Int(x, "channels") ?? 0, Int(x, "sample_rate") ?? 0))
            .ToList();
        // cover art shows up as a one-picture video stream; it is not the video
        var video = streams.FirstOrDefault(x => Str(x, "codec_type") == "video" && !IsAttachedPicture(x));
        if (video.ValueKind != JsonValueKind.Object)
            throw new MediaException(audio.Count > 0
                ? $"input has no video stream (audio-only file): {path}"
                : $"input has no video stream (not a video): {path}");
        if (formatName is "image2" or "png_pipe" or "jpeg_pipe" or "webp_pipe" or "bmp_pipe" || formatName.EndsWith("_pipe", StringComparison.Ordinal))
            throw new MediaException($"input is a still image, not a video: {path}");

        var codedW = Int(video, "width") ?? 0;
        var codedH = Int(video, "height") ?? 0;
        if (codedW <= 0 || codedH <= 0)
            throw new MediaException($"video stream has no picture size (corrupt or unsupported codec): {path}");

        var rotation = ReadRotation(video);
        var (w, h) = rotation is 90 or 270 ? (codedH, codedW) : (codedW, codedH);
        var rate = Rat(video, "r_frame_rate");
        var avg = Rat(video, "avg_frame_rate");
        var tb = Rat(video, "time_base");
        if (!tb.IsValid) tb = new Rational(1, 90000);
        if (!rate.IsValid) rate = avg.IsValid ? avg : new Rational(25, 1);
        if (!avg.IsValid) avg = rate;
        var durSec = Dbl(video, "duration") ?? Dbl(format, "duration") ?? 0;
        long? frames = Str(video, "nb_frames") is { } nb && long.TryParse(nb, CultureInfo.InvariantCulture, out var n) && n > 0 ? n : null;
        // r_frame_rate is the base rate of the timestamps, avg the mean: they only differ when frame durations vary
        var vfr = Math.Abs(rate.Value - avg.Value) > 0.001 * rate.Value;

        if (durSec > 0) CheckNotTruncated(path, full, Int(video, "index") ?? 0, durSec);

        return new VideoInfo(full, w, h, rotation, rate.Reduce(), avg.Reduce(), tb.Reduce(), TimeSpan.FromSeconds(durSec), frames, vfr,
            Str(video, "codec_name") ?? "unknown", audio)
        {
            VideoStreamIndex = Int(video, "index") ?? 0,
            FormatName = formatName,
            PixelFormat = Str(video, "pix_fmt") ?? "",
            SubtitleStreams = streams.Where(x => Str(x, "codec_type") == "subtitle").Select(Side).ToList(),
            AttachmentStreams = streams.Where(x => Str(x, "codec_type") == "attachment").Select(Side).ToList(),
        };
    }

    /// <summary>
    /// A file cut short whose index survived (e.g. faststart mp4) still probes fine, but its last packets are gone:
    /// seek near the end and make sure video packets are actually there.
    /// </summary>
    private static void CheckNotTruncated(string path, string full, int streamIndex, double duration)
    {
        var from = Math.Max(0, duration - 2).ToString("0.###", CultureInfo.InvariantCulture);
        var r = FfTools.Run(FfTools.Ffprobe, ["-v", "error", "-select_streams", streamIndex.ToString(CultureInfo.InvariantCulture),
            "-show_entries", "packet=pts", "-of", "csv=p=0", "-read_intervals", from + "%", full]);
        var packets = r.StdOut.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length;
        if (r.Code != 0 || packets == 0 || r.StdErr.Contains("partial file", StringComparison.OrdinalIgnoreCase))
            throw new MediaException($"input video is truncated or corrupt (its end is missing): {path}");
    }

    private static SideStreamInfo Side(JsonElement x)
    {
        var tags = x.TryGetProperty("tags", out var t) ? t : default;
        return new SideStreamInfo(Int(x, "index") ?? 0, Str(x, "codec_name") ?? Str(tags, "mimetype") ?? "unknown", Str(tags, "language"), Str(tags, "filename"));
    }

    private static bool IsAttachedPicture(JsonElement stream) =>
        stream.TryGetProperty("disposition", out var d) && d.TryGetProperty("attached_pic", out var a) && a.ValueKind == JsonValueKind.Number && a.GetInt32() == 1;

    /// <summary>Clockwise degrees a player turns the stored picture: the display matrix (ffprobe's counter-clockwise "rotation") or the legacy "rotate" tag.</summary>
    private static int ReadRotation(JsonElement video)
    {
        double? ccw = null;
        if (video.TryGetProperty("side_data_list", out var sd) && sd.ValueKind == JsonValueKind.Array)
            foreach (var item in sd.EnumerateArray())
                if (Dbl(item, "rotation") is { } rot) { ccw = rot; break; }
        int cw;
        if (ccw is { } c) cw = -(int)Math.Round(c);
        else if (video.TryGetProperty("tags", out var tags) && Dbl(tags, "rotate") is { } tag) cw = (int)Math.Round(tag);
        else return 0;
        cw = ((cw % 360) + 360) % 360;
        // only quarter turns are meaningful for video
        return (int)(Math.Round(cw / 90.0) * 90) % 360;
    }

    private static string? Str(JsonElement e, string name) =>
        e.ValueKind == JsonValueKind.Object && e.TryGetProperty(name, out var v)
            ? v.ValueKind switch { JsonValueKind.String => v.GetString(), JsonValueKind.Number => v.GetRawText(), _ => null }
            : null;

    private static int? Int(JsonElement e, string name) =>
        Str(e, name) is { } s && int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out var i) ? i : null;

    private static double? Dbl(JsonElement e, string name) =>
        Str(e, name) is { } s && double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) ? d : null;

    private static Rational Rat(JsonElement e, string name) =>
        Rational.TryParse(Str(e, name), out var r) ? r : default;
}
