// Build-time tool: writes dlib's built-in frontal face detector in dlib's plain serialization to stdout.
// get_frontal_face_detector() decodes it from a compressed string on every call, most of a second of CPU; the shim
// embeds these bytes instead and deserializes them (milliseconds) into the very same detector.
#include <dlib/image_processing/frontal_face_detector.h>
#include <iostream>

int main() {
    const std::string bytes = dlib::get_serialized_frontal_faces();
    std::cout.write(bytes.data(), (std::streamsize)bytes.size());
    return std::cout.good() ? 0 : 1;
}
