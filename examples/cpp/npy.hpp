// Minimal reader of float32 .npy files (little-endian '<f4', C order, 2-D H x W or 3-D N x H x W).
#pragma once

#include <cstdint>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

struct NpyImages {
    std::size_t n = 0, h = 0, w = 0;
    std::vector<float> data;  // n * h * w
};

inline NpyImages read_npy(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw std::runtime_error(path + ": cannot open");
    char magic[8];
    f.read(magic, 8);
    if (!f || std::memcmp(magic, "\x93NUMPY", 6) != 0) throw std::runtime_error(path + ": not a .npy file");
    std::uint32_t header_len = 0;
    if (magic[6] == 1) {
        unsigned char b[2];
        f.read(reinterpret_cast<char*>(b), 2);
        header_len = b[0] | (b[1] << 8);
    } else {
        unsigned char b[4];
        f.read(reinterpret_cast<char*>(b), 4);
        header_len = b[0] | (b[1] << 8) | (b[2] << 16) | (std::uint32_t(b[3]) << 24);
    }
    std::string header(header_len, '\0');
    f.read(&header[0], header_len);
    if (header.find("'descr': '<f4'") == std::string::npos || header.find("'fortran_order': False") == std::string::npos)
        throw std::runtime_error(path + ": need little-endian float32 in C order, header " + header);
    std::vector<std::size_t> shape;
    std::size_t pos = header.find("'shape': (");
    if (pos == std::string::npos) throw std::runtime_error(path + ": no shape");
    for (pos += 10; header[pos] != ')';) {
        if (header[pos] >= '0' && header[pos] <= '9') {
            std::size_t end = 0;
            shape.push_back(std::stoul(header.substr(pos), &end));
            pos += end;
        } else {
            pos++;
        }
    }
    NpyImages im;
    if (shape.size() == 2) {
        im.n = 1, im.h = shape[0], im.w = shape[1];
    } else if (shape.size() == 3) {
        im.n = shape[0], im.h = shape[1], im.w = shape[2];
    } else {
        throw std::runtime_error(path + ": need a 2-D or 3-D array");
    }
    im.data.resize(im.n * im.h * im.w);
    f.read(reinterpret_cast<char*>(im.data.data()), std::streamsize(im.data.size() * sizeof(float)));
    if (!f) throw std::runtime_error(path + ": truncated");
    return im;
}
