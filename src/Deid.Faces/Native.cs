using System.Reflection;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Deid.Faces;

/// <summary>A dlib or shim failure, with the message the native side reported.</summary>
public class FaceException : Exception
{
    public FaceException(string message, Exception? inner = null) : base(message, inner) { }
}

internal sealed class DetectorHandle : SafeHandleZeroOrMinusOneIsInvalid
{
    public DetectorHandle() : base(true) { }
    protected override bool ReleaseHandle() { Native.deid_detector_free(handle); return true; }
}

internal sealed class PredictorHandle : SafeHandleZeroOrMinusOneIsInvalid
{
    public PredictorHandle() : base(true) { }
    protected override bool ReleaseHandle() { Native.deid_predictor_free(handle); return true; }
}

/// <summary>P/Invoke surface of native/deid_dlib.cpp (built into libdeid_dlib.so beside the assembly).</summary>
internal static unsafe partial class Native
{
    private const string Lib = "deid_dlib";

    static Native()
    {
        // The test host and the CLI run from different folders and the runtime's default probing does not always
        // look beside this assembly, so resolve the shim explicitly (app folder, assembly folder, source tree).
        try { NativeLibrary.SetDllImportResolver(typeof(Native).Assembly, Resolve); }
        catch (InvalidOperationException) { /* a resolver is already installed for this assembly */ }
    }

    /// <summary>
    /// The AVX2+FMA build of the shim where this CPU has both (dlib's HOG features and the shape predictor's
    /// templates are compiled into the shim, so its ISA is theirs), else the x86-64 baseline build.
    /// DEID_DLIB_ISA=baseline forces the baseline one (benchmarks, and checking it on an AVX2 machine).
    /// </summary>
    private static IEnumerable<string> Candidates()
    {
        var forced = Environment.GetEnvironmentVariable("DEID_DLIB_ISA");
        if (forced != "baseline" && System.Runtime.Intrinsics.X86.Avx2.IsSupported && System.Runtime.Intrinsics.X86.Fma.IsSupported)
            yield return "lib" + Lib + "_avx2.so";
        yield return "lib" + Lib + ".so";
    }

    private static IntPtr Resolve(string name, Assembly assembly, DllImportSearchPath? path)
    {
        if (name != Lib) return IntPtr.Zero;
        var dirs = new List<string> { AppContext.BaseDirectory };
        if (Path.GetDirectoryName(assembly.Location) is { Length: > 0 } asmDir) dirs.Add(asmDir);
        foreach (var file in Candidates())
            foreach (var dir in dirs)
            {
                var candidate = Path.Combine(dir, file);
                if (File.Exists(candidate) && NativeLibrary.TryLoad(candidate, out var h)) return h;
            }
        return NativeLibrary.TryLoad("lib" + Lib + ".so", assembly, path, out var handle) ? handle : IntPtr.Zero;
    }

    /// <summary>Forces the static constructor (and so the resolver) before any import is bound.</summary>
    internal static void EnsureLoaded() { }

    [LibraryImport(Lib)]
    private static partial IntPtr deid_last_error();

    [LibraryImport(Lib)]
    private static partial IntPtr deid_simd();

    /// <summary>The instruction set the loaded shim's dlib code was compiled for (avx2, sse2...).</summary>
    internal static string Simd => Marshal.PtrToStringUTF8(deid_simd()) ?? "unknown";

    internal static string LastError()
    {
        var p = deid_last_error();
        var text = p == IntPtr.Zero ? null : Marshal.PtrToStringUTF8(p);
        // dlib's messages span several lines; the CLI reports errors on one.
        return string.IsNullOrWhiteSpace(text) ? "unknown dlib error" : System.Text.RegularExpressions.Regex.Replace(text, @"\s+", " ").Trim();
    }

    [LibraryImport(Lib)]
    internal static partial DetectorHandle deid_detector_new();

    [LibraryImport(Lib)]
    internal static partial void deid_detector_free(IntPtr detector);

    [LibraryImport(Lib)]
    internal static partial long deid_filter_mismatches(byte* data, int width, int height, int stride);

    [LibraryImport(Lib)]
    internal static partial long deid_fhog_mismatches(byte* data, int width, int height, int stride, int asCopy, int padding);

    [LibraryImport(Lib)]
    internal static partial int deid_detect(DetectorHandle detector, byte* data, int width, int height, int stride, int channels,
        int upsample, double adjustThreshold, int maxLevels, double* output, int maxFaces);

    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial PredictorHandle deid_predictor_load(string path, int reference);

    [LibraryImport(Lib)]
    internal static partial void deid_predictor_free(IntPtr predictor);

    [LibraryImport(Lib)]
    internal static partial int deid_predict(PredictorHandle predictor, byte* data, int width, int height, int stride, int channels,
        double left, double top, double right, double bottom, float* outXy, int maxParts);
}
