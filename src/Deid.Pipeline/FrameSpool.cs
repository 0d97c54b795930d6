using System.Buffers.Binary;
using Microsoft.Win32.SafeHandles;

namespace Deid.Pipeline;

/// <summary>How one kind of per-frame record becomes bytes in a <see cref="FrameSpool{T, TCodec}"/> and back.</summary>
internal interface IFrameCodec<T>
{
    /// <summary>At least the bytes <see cref="Write"/> takes for this record.</summary>
    static abstract int MaxSize(T record);

    /// <summary>Writes the record at the start of <paramref name="to"/> (<see cref="MaxSize"/> bytes long) and returns the bytes used.</summary>
    static abstract int Write(T record, Span<byte> to);

    /// <summary>The record <see cref="Write"/> wrote as exactly these bytes.</summary>
    static abstract T Read(ReadOnlySpan<byte> from);
}

/// <summary>
/// The per-frame records of a run, kept in an anonymous temp file instead of memory: a run of hours has millions of
/// them, and keeping them on the managed heap made resident memory grow with clip length (the soak bench).
/// Records are appended in a small binary form (<typeparamref name="TCodec"/>'s, each behind its length, so the
/// spool itself knows nothing of their fields) and read back in order as often as asked (a JSON report, tests).
/// The file is unlinked as soon as it is opened (Unix), so nothing is left in the temp folder however the process ends.
/// Appends come from one writer (the encode stage); reads see everything appended before they began.
/// </summary>
internal sealed class FrameSpool<T, TCodec> : IDisposable where TCodec : IFrameCodec<T>
{
    private const int FlushAt = 64 * 1024;
    private const int LengthSize = 4;
    private readonly object _gate = new();
    private SafeFileHandle? _file;
    private byte[] _buffer = new byte[FlushAt + 4096];
    private int _buffered;
    private long _written;
    private bool _disposed;

    public long Count { get; private set; }

    public void Add(T record)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var max = TCodec.MaxSize(record);
            var need = LengthSize + max;
            if (_buffered + need > _buffer.Length) Array.Resize(ref _buffer, Math.Max(_buffer.Length * 2, _buffered + need));
            var length = TCodec.Write(record, _buffer.AsSpan(_buffered + LengthSize, max));
            BinaryPrimitives.WriteInt32LittleEndian(_buffer.AsSpan(_buffered), length);
            _buffered += LengthSize + length;
            Count++;
            if (_buffered >= FlushAt) Flush();
        }
    }

    /// <summary>Every record appended so far, in order; safe to enumerate several times, also side by side.</summary>
    public IEnumerable<T> Read()
    {
        long end;
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            Flush();
            end = _written;
        }
        return end == 0 ? [] : ReadUpTo(end);
    }

    private IEnumerable<T> ReadUpTo(long end)
    {
        var chunk = new byte[FlushAt];
        int have = 0, at = 0;
        long offset = 0;
        // Makes at least `count` unread bytes available in `chunk` (growing it for a record larger than a chunk,
        // e.g. a frame with very many faces).
        void Need(int count)
        {
            if (have - at >= count) return;
            if (count > chunk.Length) Array.Resize(ref chunk, count);
            Buffer.BlockCopy(chunk, at, chunk, 0, have - at);
            have -= at;
            at = 0;
            while (have < count)
            {
                int got;
                lock (_gate)
                {
                    ObjectDisposedException.ThrowIf(_disposed, this);
                    got = RandomAccess.Read(_file!, chunk.AsSpan(have, (int)Math.Min(chunk.Length - have, end - offset)), offset);
                }
                if (got <= 0) throw new InvalidDataException("the report's frame spool ended early");
                have += got;
                offset += got;
            }
        }
        while (offset < end || at < have)
        {
            Need(LengthSize);
            var length = BinaryPrimitives.ReadInt32LittleEndian(chunk.AsSpan(at));
            at += LengthSize;
            if (length < 0) throw new InvalidDataException("the report's frame spool is corrupt");
            Need(length);
            var record = TCodec.Read(chunk.AsSpan(at, length));
            at += length;
            yield return record;
        }
    }

    private void Flush()
    {
        if (_buffered == 0) return;
        _file ??= OpenAnonymous();
        RandomAccess.Write(_file, _buffer.AsSpan(0, _buffered), _written);
        _written += _buffered;
        _buffered = 0;
    }

    private static SafeFileHandle OpenAnonymous()
    {
        var path = Path.Combine(Path.GetTempPath(), $"deid-frames-{Environment.ProcessId}-{Guid.NewGuid():N}.bin");
        var windows = OperatingSystem.IsWindows();
        var handle = File.OpenHandle(path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None,
            windows ? FileOptions.DeleteOnClose : FileOptions.None);
        if (!windows)
        {
            try { File.Delete(path); }
            catch { handle.Dispose(); throw; }
        }
        return handle;
    }

    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
            _file?.Dispose();
            _file = null;
            _buffer = [];
        }
    }
}

/// <summary>Little-endian fields one after another into a codec's span (see <see cref="IFrameCodec{T}"/>).</summary>
internal ref struct SpoolWriter(Span<byte> to)
{
    private readonly Span<byte> _to = to;

    public int Length { get; private set; }

    public void Byte(byte v) => _to[Length++] = v;
    public void Bool(bool v) => Byte(v ? (byte)1 : (byte)0);
    public void Int32(int v) { BinaryPrimitives.WriteInt32LittleEndian(_to[Length..], v); Length += 4; }
    public void Int64(long v) { BinaryPrimitives.WriteInt64LittleEndian(_to[Length..], v); Length += 8; }
    public void Single(float v) { BinaryPrimitives.WriteSingleLittleEndian(_to[Length..], v); Length += 4; }
    public void Double(double v) { BinaryPrimitives.WriteDoubleLittleEndian(_to[Length..], v); Length += 8; }
}

/// <summary>Reads back what a <see cref="SpoolWriter"/> wrote, field by field in the same order.</summary>
internal ref struct SpoolReader(ReadOnlySpan<byte> from)
{
    private readonly ReadOnlySpan<byte> _from = from;
    private int _at;

    public byte Byte() => _from[_at++];
    public bool Bool() => Byte() != 0;
    public int Int32() { var v = BinaryPrimitives.ReadInt32LittleEndian(_from[_at..]); _at += 4; return v; }
    public long Int64() { var v = BinaryPrimitives.ReadInt64LittleEndian(_from[_at..]); _at += 8; return v; }
    public float Single() { var v = BinaryPrimitives.ReadSingleLittleEndian(_from[_at..]); _at += 4; return v; }
    public double Double() { var v = BinaryPrimitives.ReadDoubleLittleEndian(_from[_at..]); _at += 8; return v; }
}
