# embed-text.cmake: writes a text file as a C string constant, for sources
# that must travel inside the binary (the queue's Redis functions).
#   cmake -DIN=file -DOUT=file.c -DNAME=symbol -P embed-text.cmake
# gives `const char NAME[] = {...bytes..., 0};` (hex bytes, so no quoting
# or line-length rules of C strings apply).
file(READ ${IN} hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "((0x[0-9a-f][0-9a-f],){16})" "\\1\n" bytes "${bytes}")
file(WRITE ${OUT} "/* generated from ${IN} by scripts/embed-text.cmake */\nconst char ${NAME}[] = {\n${bytes}0};\n")
