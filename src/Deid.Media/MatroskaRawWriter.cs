using System.Buffers.Binary;
using OpenCvSharp;

namespace Deid.Media;

/// <summary>
/// Streams raw BGR frames as a minimal Matroska file (V_UNCOMPRESSED, fourcc "BGR\x18") so that ffmpeg reading it
/// from a pipe gets every frame's own timestamp: a raw pipe has none, and that is what keeps VFR intact.
/// Timestamps are in nanoseconds (TimestampScale 1), so one cluster per frame (blocks hold only a 16-bit offset).
/// </summary>
internal sealed class MatroskaRawWriter
{
    private readonly Stream _out;
    private readonly int _frameBytes;
    private readonly byte[] _header = new byte[64];

    public MatroskaRawWriter(Stream output, int width, int height, long defaultDurationNs)
    {
        _out = output;
        _frameBytes = checked(width * height * 3);
        var head = new MemoryStream();
        Element(head, 0x1A45DFA3, Concat(
            Uint(0x4286, 1), Uint(0x42F7, 1), Uint(0x42F2, 4), Uint(0x42F3, 8),
            Bytes(0x4282, "matroska"u8.ToArray()), Uint(0x4287, 4), Uint(0x4285, 2)));
        // Segment of unknown size: it is streamed
        WriteId(head, 0x18538067);
        head.Write([0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
        Element(head, 0x1549A966, Concat(Uint(0x2AD7B1, 1), Bytes(0x4D80, "deid"u8.ToArray()), Bytes(0x5741, "deid"u8.ToArray())));
        var video = Concat(Uint(0xB0, (ulong)width), Uint(0xBA, (ulong)height), Bytes(0x2EB524, [(byte)'B', (byte)'G', (byte)'R', 24]));
        var track = Concat(Uint(0xD7, 1), Uint(0x73C5, 1), Uint(0x83, 1), Uint(0x9C, 0),
            Bytes(0x86, "V_UNCOMPRESSED"u8.ToArray()),
            defaultDurationNs > 0 ? Uint(0x23E383, (ulong)defaultDurationNs) : [],
            Bytes(0xE0, video));
        Element(head, 0x1654AE6B, Bytes(0xAE, track));
        head.Position = 0;
        head.CopyTo(_out);
    }

    public unsafe void WriteFrame(Mat bgr, ulong timestampNs)
    {
        // Cluster { Timestamp, SimpleBlock { track 1, offset 0, keyframe, pixels } }
        var tsPayload = UintPayload(timestampNs);
        var blockLen = 4L + _frameBytes;
        var timestampEl = 1 + 1 + tsPayload.Length;
        var blockEl = 1 + 8 + blockLen;
        var clusterLen = timestampEl + blockEl;
        var h = _header.AsSpan();
        var n = 0;
        BinaryPrimitives.WriteUInt32BigEndian(h[n..], 0x1F43B675); n += 4;
        n += WriteSize8(h[n..], (ulong)clusterLen);
        h[n++] = 0xE7; h[n++] = (byte)(0x80 | tsPayload.Length);
        tsPayload.CopyTo(h[n..]); n += tsPayload.Length;
        h[n++] = 0xA3;
        n += WriteSize8(h[n..], (ulong)blockLen);
        h[n++] = 0x81; h[n++] = 0; h[n++] = 0; h[n++] = 0x80;
        _out.Write(_header, 0, n);

        if (bgr.IsContinuous())
        {
            _out.Write(new ReadOnlySpan<byte>((void*)bgr.Data, _frameBytes));
        }
        else
        {
            var row = bgr.Cols * 3;
            var rows = bgr.Rows;
            for (var y = 0; y < rows; y++)
                _out.Write(new ReadOnlySpan<byte>((void*)bgr.Ptr(y), row));
        }
    }

    private static int WriteSize8(Span<byte> dst, ulong size)
    {
        BinaryPrimitives.WriteUInt64BigEndian(dst, size | 0x0100000000000000UL);
        return 8;
    }

    private static byte[] UintPayload(ulong v)
    {
        var len = 1;
        while (len < 8 && (v >> (8 * len)) != 0) len++;
        var b = new byte[len];
        for (var i = 0; i < len; i++) b[len - 1 - i] = (byte)(v >> (8 * i));
        return b;
    }

    private static byte[] Uint(uint id, ulong v) => Bytes(id, UintPayload(v));

    private static byte[] Bytes(uint id, byte[] payload)
    {
        var ms = new MemoryStream();
        Element(ms, id, payload);
        return ms.ToArray();
    }

    private static byte[] Concat(params byte[][] parts) => parts.SelectMany(p => p).ToArray();

    private static void Element(Stream s, uint id, byte[] payload)
    {
        WriteId(s, id);
        var size = (ulong)payload.Length;
        Span<byte> buf = stackalloc byte[8];
        WriteSize8(buf, size);
        s.Write(buf);
        s.Write(payload);
    }

    private static void WriteId(Stream s, uint id)
    {
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(b, id);
        var skip = id > 0xFFFFFF ? 0 : id > 0xFFFF ? 1 : id > 0xFF ? 2 : 3;
        s.Write(b[skip..]);
    }
}
